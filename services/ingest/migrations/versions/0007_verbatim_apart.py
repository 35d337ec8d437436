"""ingest: the verbatim bytes apart from the state of a list. What arrived (format, caller,
correlation id, bytes) moves to `ingest_verbatim`, one row per `ingest_raw` row with the same id,
inserted with it and never updated; `ingest_raw` keeps the list's state (status, decision,
job line, ...), so deciding a list rewrites a narrow row instead of the ~3.5 KB one that held
its bytes (on PostgreSQL the update copied the whole row). The partial indexes of ingest_0005
stay on `ingest_raw`, where the status is. The bytes keep lz4 on PostgreSQL servers that have it.

Revision ID: ingest_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0007"
down_revision = "ingest_0006"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOVED = ("format", "caller_hospital", "correlation_id", "raw")
PENDING = sa.text("status = 'pending'")
DECIDED = sa.text("hospital_code IS NOT NULL")


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    values = bind.execute(sa.text(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")).scalar()
    return "lz4" in (values or [])


def _rebuilt_on_sqlite(change) -> None:  # type: ignore[no-untyped-def]
    """`change(batch)` on ingest_raw; SQLite copies the table to a new one, so the partial
    indexes are dropped before and made again after (their predicates as written here)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in ("ix_ingest_raw_pending", "ix_ingest_raw_hospital", "ix_ingest_raw_job"):
            op.drop_index(name, table_name="ingest_raw")
    with op.batch_alter_table("ingest_raw") as batch:
        change(batch)
    if sqlite:
        op.create_index("ix_ingest_raw_pending", "ingest_raw", ["id"], sqlite_where=PENDING)
        op.create_index("ix_ingest_raw_hospital", "ingest_raw", ["hospital_code", "discharge_date"],
                        sqlite_where=DECIDED)
        op.create_index("ix_ingest_raw_job", "ingest_raw", ["job_id", "received_at"])


def upgrade() -> None:
    op.create_table(
        "ingest_verbatim",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("caller_hospital", sa.String(32), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    if _lz4_available():
        op.execute("ALTER TABLE ingest_verbatim ALTER COLUMN raw SET COMPRESSION lz4")
    op.execute("INSERT INTO ingest_verbatim (id, format, caller_hospital, correlation_id, raw) "
               "SELECT id, format, caller_hospital, correlation_id, raw FROM ingest_raw")

    def drop(batch) -> None:  # type: ignore[no-untyped-def]
        for column in MOVED:
            batch.drop_column(column)
    _rebuilt_on_sqlite(drop)


def downgrade() -> None:
    def add(batch) -> None:  # type: ignore[no-untyped-def]
        batch.add_column(sa.Column("format", sa.String(8), nullable=True))
        batch.add_column(sa.Column("caller_hospital", sa.String(32), nullable=True))
        batch.add_column(sa.Column("raw", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("correlation_id", sa.String(64), nullable=True))
    _rebuilt_on_sqlite(add)
    if _lz4_available():
        op.execute("ALTER TABLE ingest_raw ALTER COLUMN raw SET COMPRESSION lz4")
    for column in MOVED:
        op.execute(f"UPDATE ingest_raw SET {column} = (SELECT v.{column} FROM ingest_verbatim v "
                   f"WHERE v.id = ingest_raw.id)")

    def required(batch) -> None:  # type: ignore[no-untyped-def]
        for column, kind in (("format", sa.String(8)), ("raw", sa.LargeBinary()),
                             ("correlation_id", sa.String(64))):
            batch.alter_column(column, existing_type=kind, nullable=False)
    _rebuilt_on_sqlite(required)
    op.drop_table("ingest_verbatim")
