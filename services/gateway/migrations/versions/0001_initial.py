"""gateway: the read model (cases and their timeline), outbox, inbox

Revision ID: gateway_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "gateway_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "gateway_cases",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received", sa.Text, nullable=True),
        sa.Column("grouped", sa.Text, nullable=True),
        sa.Column("priced", sa.Text, nullable=True),
        sa.Column("reviewed", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_cases_hospital", "gateway_cases", ["hospital_code", "status"])
    op.create_table(
        "gateway_timeline",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("producer", sa.String(32), nullable=False),
    )
    op.create_index("ix_gateway_timeline_case", "gateway_timeline", ["case_id"])
    create_messaging_tables(op, "gateway")
