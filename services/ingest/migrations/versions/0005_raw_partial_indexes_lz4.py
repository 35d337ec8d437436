"""ingest: cheaper to store a list. The status index becomes a partial index of the lists still
pending (a decided list leaves no entry behind), the hospital index a partial index of the
decided lists (a pending list has no hospital yet), the job index carries the time a list
arrived (the sweep's "when did this open job last receive a list" reads one entry, not each of
the job's rows), and on PostgreSQL servers built with lz4 the verbatim bytes are compressed with
lz4 instead of pglz (new rows; stored rows keep theirs)

Revision ID: ingest_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0005"
down_revision = "ingest_0004"

PENDING = sa.text("status = 'pending'")
DECIDED = sa.text("hospital_code IS NOT NULL")


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    values = bind.execute(sa.text(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")).scalar()
    return "lz4" in (values or [])


def upgrade() -> None:
    op.drop_index("ix_ingest_raw_status", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_pending", "ingest_raw", ["id"], postgresql_where=PENDING, sqlite_where=PENDING)
    op.drop_index("ix_ingest_raw_hospital", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_hospital", "ingest_raw", ["hospital_code", "discharge_date"],
                    postgresql_where=DECIDED, sqlite_where=DECIDED)
    op.drop_index("ix_ingest_raw_job", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_job", "ingest_raw", ["job_id", "received_at"])
    if _lz4_available():
        op.execute("ALTER TABLE ingest_raw ALTER COLUMN raw SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE ingest_raw ALTER COLUMN raw SET COMPRESSION pglz")
    op.drop_index("ix_ingest_raw_job", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_job", "ingest_raw", ["job_id"])
    op.drop_index("ix_ingest_raw_hospital", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_hospital", "ingest_raw", ["hospital_code", "discharge_date"])
    op.drop_index("ix_ingest_raw_pending", table_name="ingest_raw")
    op.create_index("ix_ingest_raw_status", "ingest_raw", ["status"])
