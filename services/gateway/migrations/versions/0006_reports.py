"""gateway: the cases' fees per item (01–14) in the indicator cells (the quarterly bulletin's
spending by item), reports as issued, performance evaluations and their parameters

Revision ID: gateway_0006
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, money

revision = "gateway_0006"
down_revision = "gateway_0005"
FEES = [f"fee_{n:02d}_sum" for n in range(1, 15)]


def upgrade() -> None:
    with op.batch_alter_table("gateway_indicator_cells") as batch:
        for name in FEES:
            batch.add_column(sa.Column(name, money(), nullable=False, server_default="0"))
    op.create_table(
        "gateway_reports",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(128), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.UniqueConstraint("kind", "scope", "period", "version", name="uq_gateway_reports_version"),
    )
    op.create_table(
        "gateway_evaluations",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("period", sa.String(6), nullable=False),
        sa.Column("parameters_version", sa.Integer, nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evaluated_by", sa.String(128), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("adopted_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_gateway_evaluations_period", "gateway_evaluations", ["region", "period"])
    op.create_table(
        "gateway_evaluation_parameters",
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("valid_from", sa.String(4), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("region", "version", name="pk_gateway_evaluation_parameters"),
    )


def downgrade() -> None:
    op.drop_table("gateway_evaluation_parameters")
    op.drop_index("ix_gateway_evaluations_period", table_name="gateway_evaluations")
    op.drop_table("gateway_evaluations")
    op.drop_table("gateway_reports")
    with op.batch_alter_table("gateway_indicator_cells") as batch:
        for name in FEES:
            batch.drop_column(name)
