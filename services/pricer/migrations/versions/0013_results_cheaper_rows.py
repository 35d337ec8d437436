"""pricer: cheaper to store a priced case on PostgreSQL: its rows are kept whole in their pages
(no pglz compression or TOAST rows for each case: `toast_tuple_target` 8160)

Revision ID: pricer_0013
"""

from alembic import op

revision = "pricer_0013"
down_revision = "pricer_0012"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_results SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_results RESET (toast_tuple_target)")
