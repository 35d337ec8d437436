"""ingest: the stored lists of an import job found by its id (the sweep closes interrupted jobs)

Revision ID: ingest_0003
"""

from alembic import op

revision = "ingest_0003"
down_revision = "ingest_0002"


def upgrade() -> None:
    op.create_index("ix_ingest_raw_job", "ingest_raw", ["job_id"])
