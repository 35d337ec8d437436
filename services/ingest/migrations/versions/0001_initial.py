"""ingest: stored lists, outbox, inbox

Revision ID: ingest_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "ingest_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ingest_lists",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("setl_id", sa.String(64), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("hospital_code", "setl_id", "list_version", name="uq_ingest_lists_version"),
    )
    op.create_index("ix_ingest_lists_case", "ingest_lists", ["case_id"])
    create_messaging_tables(op, "ingest")
