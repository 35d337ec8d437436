"""gateway: each case's stage results in rows of their own, keyed (case, stage), moved out of the
case's row (an event writes only its own result; the case's row stays small)

Revision ID: gateway_0010
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0010"
down_revision = "gateway_0009"

STAGES = ("received", "grouped", "priced", "reviewed")


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


def downgrade() -> None:
    with op.batch_alter_table("gateway_cases") as batch:
        for stage in STAGES:
            batch.add_column(sa.Column(stage, sa.Text, nullable=True))
    for stage in STAGES:
        op.execute(f"UPDATE gateway_cases SET {stage} = (SELECT r.result FROM gateway_case_results r "
                   f"WHERE r.case_id = gateway_cases.case_id AND r.stage = '{stage}')")
    op.drop_table("gateway_case_results")
