"""gateway: the indicator cells' rollups per period (month, quarter, year) — per hospital, per
group, per department and group, per hospital and group — and the cases per (hospital, status),
filled from the cells and the cases; a batch's changes to the cells (the upserts' source); a
hospital's cases in id order

Revision ID: gateway_0009
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ExactDecimal, money

revision = "gateway_0009"
down_revision = "gateway_0008"

COUNTS = ("cases", "grouped", "weighted", "los_cases", "paid", "high_outliers", "low_outliers",
          "special_review", "special_cases", "flagged", "readmissions_15", "readmissions_31",
          "near_high", "near_low", "transfers_out", "left_against_advice", "los_sum")
MONEY = ("cost_sum", "own_pay_sum", "paid_cost_sum", "payment_sum", "fund_payment_sum",
         *(f"fee_{n:02d}_sum" for n in range(1, 15)))
SUMS = (*COUNTS, "weight_sum", *MONEY)
ROLLUPS = {
    "hospitals": ("hospital_code", "hospital_level", "region"),
    "groups": ("region", "scheme_id", "drg"),
    "depts": ("region", "dept", "scheme_id", "drg"),
    "hospital_groups": ("hospital_code", "hospital_level", "region", "scheme_id", "drg"),
}
STRINGS = {"region": 32, "hospital_code": 32, "dept": 32, "scheme_id": 64, "drg": 32}
# a month's cells count in the month, its quarter and its year (discharge month not known: itself)
_KNOWN = "length(month) = 7"
PERIODS = ("month",
           f"CASE WHEN {_KNOWN} THEN substr(month, 1, 4) || 'Q' || "
           "CAST((CAST(substr(month, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1)) END",
           f"CASE WHEN {_KNOWN} THEN substr(month, 1, 4) END")


def upgrade() -> None:
    for name, columns in ROLLUPS.items():
        table = f"gateway_indicator_{name}"
        op.create_table(
            table, sa.Column("period", sa.String(7), nullable=False),
            *[sa.Column(c, sa.Integer, nullable=False) if c == "hospital_level" else
              sa.Column(c, sa.String(STRINGS[c]), nullable=False) for c in columns],
            *[sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in COUNTS],
            sa.Column("weight_sum", ExactDecimal(18, 4), nullable=False, server_default="0"),
            *[sa.Column(n, money(), nullable=False, server_default="0") for n in MONEY],
            sa.PrimaryKeyConstraint("period", *columns, name=f"pk_{table}"), sqlite_with_rowid=False)
        keys = ", ".join(columns)
        for period in PERIODS:
            op.execute(f"INSERT INTO {table} (period, {keys}, {', '.join(SUMS)}) "
                       f"SELECT {period}, {keys}, {', '.join(f'SUM({n})' for n in SUMS)} "
                       f"FROM gateway_indicator_cells WHERE {period} IS NOT NULL AND cases <> 0 "
                       f"GROUP BY {period}, {keys}")
    # a batch's changes to the cells, within its transaction only
    op.create_table(
        "gateway_indicator_changes",
        *[sa.Column(c, sa.Integer, nullable=False) if c == "hospital_level" else
          sa.Column(c, sa.String(7 if c == "month" else STRINGS[c]), nullable=False)
          for c in ("region", "month", "hospital_code", "hospital_level", "dept", "scheme_id", "drg")],
        *[sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in COUNTS],
        sa.Column("weight_sum", ExactDecimal(18, 4), nullable=False, server_default="0"),
        *[sa.Column(n, money(), nullable=False, server_default="0") for n in MONEY])
    op.create_table(
        "gateway_case_counts",
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cases", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("hospital_code", "status", name="pk_gateway_case_counts"))
    op.execute("INSERT INTO gateway_case_counts (hospital_code, status, cases) "
               "SELECT hospital_code, status, COUNT(*) FROM gateway_cases GROUP BY hospital_code, status")
    op.create_index("ix_gateway_cases_hospital_id", "gateway_cases", ["hospital_code", "case_id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_cases_hospital_id", table_name="gateway_cases")
    op.drop_table("gateway_case_counts")
    op.drop_table("gateway_indicator_changes")
    for name in reversed(ROLLUPS):
        op.drop_table(f"gateway_indicator_{name}")
