"""pricer: prepayment advances (预付金) granted to hospitals, netted at the annual clearing

Revision ID: pricer_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "pricer_0004"
down_revision = "pricer_0003"


def upgrade() -> None:
    op.create_table(
        "pricer_advances",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("year", sa.String(4), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(100), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_pricer_advances_year", "pricer_advances", ["year", "hospital_code"])
