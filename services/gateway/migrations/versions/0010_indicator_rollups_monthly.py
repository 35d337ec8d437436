"""gateway: the indicator rollups keep month rows only (a quarter or a year is read as its
months' rows): their quarter and year rows removed

Revision ID: gateway_0010
"""

from alembic import op

revision = "gateway_0010"
down_revision = "gateway_0009"

ROLLUPS = {
    "hospitals": ("hospital_code", "hospital_level", "region"),
    "groups": ("region", "scheme_id", "drg"),
    "depts": ("region", "dept", "scheme_id", "drg"),
    "hospital_groups": ("hospital_code", "hospital_level", "region", "scheme_id", "drg"),
}
COUNTS = ("cases", "grouped", "weighted", "los_cases", "paid", "high_outliers", "low_outliers",
          "special_review", "special_cases", "flagged", "readmissions_15", "readmissions_31",
          "near_high", "near_low", "transfers_out", "left_against_advice", "los_sum")
MONEY = ("cost_sum", "own_pay_sum", "paid_cost_sum", "payment_sum", "fund_payment_sum",
         *(f"fee_{n:02d}_sum" for n in range(1, 15)))
SUMS = (*COUNTS, "weight_sum", *MONEY)
# a known month's quarter and year (what gateway_0009 kept besides the month)
_KNOWN = "length(month) = 7"
QUARTER_AND_YEAR = (f"CASE WHEN {_KNOWN} THEN substr(month, 1, 4) || 'Q' || "
                    "CAST((CAST(substr(month, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1)) END",
                    f"CASE WHEN {_KNOWN} THEN substr(month, 1, 4) END")


def upgrade() -> None:
    for name in ROLLUPS:
        # the cells' months are "" or YYYY-MM: a quarter (YYYYQn) or a year (YYYY) is neither
        op.execute(f"DELETE FROM gateway_indicator_{name} WHERE length(period) IN (4, 6)")


def downgrade() -> None:
    for name, columns in ROLLUPS.items():
        keys = ", ".join(columns)
        for period in QUARTER_AND_YEAR:
            op.execute(f"INSERT INTO gateway_indicator_{name} (period, {keys}, {', '.join(SUMS)}) "
                       f"SELECT {period}, {keys}, {', '.join(f'SUM({n})' for n in SUMS)} "
                       f"FROM gateway_indicator_cells WHERE {period} IS NOT NULL AND cases <> 0 "
                       f"GROUP BY {period}, {keys}")
