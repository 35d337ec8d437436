"""pricer: hospitals' monthly declarations, the working-day calendar and the year's budgets

Revision ID: pricer_0012
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, ExactDecimal, money

revision = "pricer_0012"
down_revision = "pricer_0011"


def upgrade() -> None:
    op.create_table(
        "pricer_declarations",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("declared_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("hospital_code", "period", name="uq_pricer_declarations"),
    )
    op.create_table(
        "pricer_calendar_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_pricer_calendar_days_year", "pricer_calendar_days", ["year"])
    op.create_table(
        "pricer_budgets",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("year", sa.String(4), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("amount", money(), nullable=False),
        sa.Column("point_value", ExactDecimal(18, 6), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("region", "year", "version", name="uq_pricer_budgets_version"),
    )


def downgrade() -> None:
    op.drop_table("pricer_budgets")
    op.drop_index("ix_pricer_calendar_days_year", "pricer_calendar_days")
    op.drop_table("pricer_calendar_days")
    op.drop_table("pricer_declarations")
