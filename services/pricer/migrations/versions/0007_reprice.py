"""pricer: each priced row keeps the `case-grouped` payload it was priced from, so stored cases
can be re-priced under the policies in force now (`drgdip reprice`)

Revision ID: pricer_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "pricer_0007"
down_revision = "pricer_0006"


def upgrade() -> None:
    with op.batch_alter_table("pricer_results") as t:
        t.add_column(sa.Column("grouped", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pricer_results") as t:
        t.drop_column("grouped")
