"""pricer: policies, priced cases, outbox, inbox

Revision ID: pricer_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "pricer_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "pricer_policies",
        sa.Column("policy_id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "pricer_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("grouping_version", sa.Integer, nullable=False),
        sa.Column("drg", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("policy_id", sa.String(64), nullable=True),
        sa.Column("weight", sa.Numeric(10, 4), nullable=True),
        sa.Column("base_rate", sa.Numeric(14, 2), nullable=True),
        sa.Column("coefficient", sa.Numeric(8, 4), nullable=True),
        sa.Column("payment_standard", sa.Numeric(14, 2), nullable=True),
        sa.Column("priced_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "list_version", "grouping_version", name="uq_pricer_results_version"),
    )
    create_messaging_tables(op, "pricer")
