"""pricer: review's special-case decisions (特例单议): the latest per case, and the decision each
priced row was made with (a decision re-prices a case under the same versions as a new row)

Revision ID: pricer_0008
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, money

revision = "pricer_0008"
down_revision = "pricer_0007"


def upgrade() -> None:
    with op.batch_alter_table("pricer_results") as t:
        t.add_column(sa.Column("special_case", sa.Integer, nullable=False, server_default="0"))
        t.drop_constraint("uq_pricer_results_version", type_="unique")
        t.create_unique_constraint("uq_pricer_results_version", [
            "case_id", "list_version", "grouping_version", "policy_id", "policy_version", "special_case"])
    op.create_table(
        "pricer_special_cases",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("application_id", ROW_ID, nullable=False),
        sa.Column("decision", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("amount", money(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pricer_special_cases")
    with op.batch_alter_table("pricer_results") as t:
        t.drop_constraint("uq_pricer_results_version", type_="unique")
        t.create_unique_constraint("uq_pricer_results_version", [
            "case_id", "list_version", "grouping_version", "policy_id", "policy_version"])
        t.drop_column("special_case")
