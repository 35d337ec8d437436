"""gateway: the indicators' aggregate cells and each case's contribution to them

Revision ID: gateway_0004
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ExactDecimal, money

revision = "gateway_0004"
down_revision = "gateway_0003"

KEY = ("region", "month", "hospital_code", "hospital_level", "dept", "scheme_id", "drg")
COUNTS = ("cases", "grouped", "weighted", "los_cases", "paid", "high_outliers", "low_outliers",
          "special_review", "special_cases", "flagged", "readmissions_15", "readmissions_31",
          "near_high", "near_low", "transfers_out", "left_against_advice", "los_sum")
MONEY = ("cost_sum", "own_pay_sum", "paid_cost_sum", "payment_sum", "fund_payment_sum")


def _key() -> list[sa.Column]:
    return [sa.Column("region", sa.String(32), nullable=False), sa.Column("month", sa.String(7), nullable=False),
            sa.Column("hospital_code", sa.String(32), nullable=False),
            sa.Column("hospital_level", sa.Integer, nullable=False),
            sa.Column("dept", sa.String(32), nullable=False), sa.Column("scheme_id", sa.String(64), nullable=False),
            sa.Column("drg", sa.String(32), nullable=False)]


def upgrade() -> None:
    # cases folded before this revision carry no contribution: they count once a new event of
    # theirs arrives (their view then changes)
    op.add_column("gateway_cases", sa.Column("indicator", sa.Text, nullable=True))
    op.create_table(
        "gateway_indicator_cells", *_key(),
        *[sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in COUNTS],
        sa.Column("weight_sum", ExactDecimal(18, 4), nullable=False, server_default="0"),
        *[sa.Column(n, money(), nullable=False, server_default="0") for n in MONEY],
        sa.PrimaryKeyConstraint(*KEY, name="pk_gateway_indicator_cells"))
    op.create_index("ix_gateway_indicator_cells_month", "gateway_indicator_cells", ["region", "month"])
    op.create_table(
        "gateway_indicator_rules", *_key(),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("flagged", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint(*KEY, "rule", name="pk_gateway_indicator_rules"))
