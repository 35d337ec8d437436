"""grouper: cases, results with trace, scheme registrations, outbox, inbox

Revision ID: grouper_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "grouper_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "grouper_cases",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("list_version", sa.Integer, primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("discharge_date", sa.Date, nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_grouper_cases_discharge", "grouper_cases", ["discharge_date"])
    op.create_table(
        "grouper_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("grouping_version", sa.Integer, nullable=False),
        sa.Column("scheme_id", sa.String(64), nullable=False),
        sa.Column("code_mode", sa.String(8), nullable=False),
        sa.Column("mdc", sa.String(8), nullable=False),
        sa.Column("adrg", sa.String(8), nullable=False),
        sa.Column("drg", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trace", sa.Text, nullable=True),
        sa.Column("grouped_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "list_version", "grouping_version", name="uq_grouper_results_version"),
    )
    op.create_table(
        "grouper_schemes",
        sa.Column("scheme_id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("valid_from", sa.Date, primary_key=True),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_messaging_tables(op, "grouper")
