"""ingest: the day each list says it was declared (uploaded), for 时效性

Revision ID: ingest_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0002"
down_revision = "ingest_0001"


def upgrade() -> None:
    op.add_column("ingest_raw", sa.Column("declared_on", sa.Date, nullable=True))
