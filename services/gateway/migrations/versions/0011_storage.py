"""gateway: cheaper rows on PostgreSQL. The outbox keeps an event's bytes whole in the row
(`toast_tuple_target` 8160: not compressed with pglz only to be deleted once published), and the
indicator tables the read model adds each batch's cases to (cells and their rollups) leave a
fifth of each page free (`fillfactor` 80; pages written from now on), so that adding to a row
writes its new version beside the old one (a HOT update: no new entry in the table's indexes)
instead of on another page. Nothing changes on SQLite.

Revision ID: gateway_0011
"""

from alembic import op

revision = "gateway_0011"
down_revision = "gateway_0010"

ADDED_TO = ("gateway_indicator_cells", "gateway_indicator_groups", "gateway_indicator_depts",
            "gateway_indicator_hospital_groups", "gateway_indicator_hospitals")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE gateway_outbox SET (toast_tuple_target = 8160)")
        for table in ADDED_TO:
            op.execute(f"ALTER TABLE IF EXISTS {table} SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ADDED_TO:
            op.execute(f"ALTER TABLE IF EXISTS {table} RESET (fillfactor)")
        op.execute("ALTER TABLE gateway_outbox RESET (toast_tuple_target)")
