"""ingest: raw payloads (verbatim, first), list versions, import jobs, outbox, inbox

Revision ID: ingest_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "ingest_0001"
down_revision = None
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingest_raw",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("caller_hospital", sa.String(32), nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=True),
        sa.Column("discharge_date", sa.Date, nullable=True),
        sa.Column("problems", sa.Text, nullable=True),
        sa.Column("case_id", sa.String(100), nullable=True),
        sa.Column("list_version", sa.Integer, nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_ingest_raw_status", "ingest_raw", ["status"])
    op.create_index("ix_ingest_raw_hospital", "ingest_raw", ["hospital_code", "discharge_date"])
    op.create_table(
        "ingest_lists",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("setl_id", sa.String(64), nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("raw_id", sa.BigInteger, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("warnings", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("hospital_code", "setl_id", "list_version", name="uq_ingest_lists_version"),
    )
    op.create_index("ix_ingest_lists_case", "ingest_lists", ["case_id"])
    op.create_table(
        "ingest_jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("caller_hospital", sa.String(32), nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
    )
    create_messaging_tables(op, "ingest")
