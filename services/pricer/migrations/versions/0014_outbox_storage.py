"""pricer: cheaper outbox rows on PostgreSQL. An event waits in the outbox for a moment and is
deleted once published: its bytes are kept whole in the row (`toast_tuple_target` 8160), not
compressed with pglz (or moved to TOAST rows) on the way in only to be thrown away. Nothing
changes on SQLite.

Revision ID: pricer_0014
"""

from alembic import op

revision = "pricer_0014"
down_revision = "pricer_0013"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_outbox SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_outbox RESET (toast_tuple_target)")
