"""ingest: each list of an import job keeps its line in the upload, so an interrupted job tells
exactly which lines were kept

Revision ID: ingest_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0004"
down_revision = "ingest_0003"


def upgrade() -> None:
    op.add_column("ingest_raw", sa.Column("job_line", sa.Integer(), nullable=True))
