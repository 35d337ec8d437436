"""pricer: cheaper to store a priced case. Its rows are kept whole in their pages (no pglz
compression or TOAST rows for each case: `toast_tuple_target` 8160 on PostgreSQL), and the
index on the case id alone goes (the unique version key starts with the case id and serves
every read by case)

Revision ID: pricer_0013
"""

from alembic import op

revision = "pricer_0013"
down_revision = "pricer_0012"


def upgrade() -> None:
    op.drop_index("ix_pricer_results_case", table_name="pricer_results")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_results SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pricer_results RESET (toast_tuple_target)")
    op.create_index("ix_pricer_results_case", "pricer_results", ["case_id"])
