"""pricer: review deductions (confirmed monitoring flags) that settlement applies

Revision ID: pricer_0009
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, money

revision = "pricer_0009"
down_revision = "pricer_0008"


def upgrade() -> None:
    op.create_table(
        "pricer_deductions",
        sa.Column("flag_id", ROW_ID, primary_key=True, autoincrement=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("amount", money(), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("case_id", sa.String(100), nullable=True),
        sa.Column("flag_period", sa.String(7), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_to", sa.String(100), nullable=True),
    )
    op.create_index("ix_pricer_deductions_pending", "pricer_deductions", ["hospital_code", "applied_to"])


def downgrade() -> None:
    op.drop_table("pricer_deductions")
