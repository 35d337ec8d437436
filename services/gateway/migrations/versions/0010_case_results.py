"""gateway: each case's stage results in rows of their own, keyed (case, stage), moved out of the
case's row (an event writes only its own result; the case's row stays small); the indicator
rollups keep month rows only (a quarter or a year is read as the sum of its months' rows)

Revision ID: gateway_0010
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0010"
down_revision = "gateway_0009"

STAGES = ("received", "grouped", "priced", "reviewed")
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
# the quarter and the year of a month (YYYY-MM), as the rollups kept them before
_KNOWN = "length(period) = 7"
OTHER_PERIODS = (f"CASE WHEN {_KNOWN} THEN substr(period, 1, 4) || 'Q' || "
                 "CAST((CAST(substr(period, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1)) END",
                 f"CASE WHEN {_KNOWN} THEN substr(period, 1, 4) END")


def upgrade() -> None:
    op.create_table(
        "gateway_case_results",
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("case_id", "stage", name="pk_gateway_case_results"))
    for stage in STAGES:
        op.execute(f"INSERT INTO gateway_case_results (case_id, stage, result) "
                   f"SELECT case_id, '{stage}', {stage} FROM gateway_cases WHERE {stage} IS NOT NULL")
    with op.batch_alter_table("gateway_cases") as batch:
        for stage in STAGES:
            batch.drop_column(stage)
    # the rollups' month rows, summed again from the cells (their quarter and year rows go)
    for name, columns in ROLLUPS.items():
        keys = ", ".join(columns)
        op.execute(f"DELETE FROM gateway_indicator_{name}")
        op.execute(f"INSERT INTO gateway_indicator_{name} (period, {keys}, {', '.join(SUMS)}) "
                   f"SELECT month, {keys}, {', '.join(f'SUM({n})' for n in SUMS)} "
                   f"FROM gateway_indicator_cells WHERE cases <> 0 GROUP BY month, {keys}")


def downgrade() -> None:
    for name, columns in ROLLUPS.items():
        keys = ", ".join(columns)
        for period in OTHER_PERIODS:
            op.execute(f"INSERT INTO gateway_indicator_{name} (period, {keys}, {', '.join(SUMS)}) "
                       f"SELECT {period}, {keys}, {', '.join(f'SUM({n})' for n in SUMS)} "
                       f"FROM gateway_indicator_{name} WHERE {period} IS NOT NULL AND cases <> 0 "
                       f"GROUP BY {period}, {keys}")
    with op.batch_alter_table("gateway_cases") as batch:
        for stage in STAGES:
            batch.add_column(sa.Column(stage, sa.Text, nullable=True))
    for stage in STAGES:
        op.execute(f"UPDATE gateway_cases SET {stage} = (SELECT r.result FROM gateway_case_results r "
                   f"WHERE r.case_id = gateway_cases.case_id AND r.stage = '{stage}')")
    op.drop_table("gateway_case_results")
