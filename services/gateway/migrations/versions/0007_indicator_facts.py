"""gateway: the facts of each case's current list version that its indicator contribution is
computed from (`drgdip indicators rebuild` recomputes the cells from them)

Revision ID: gateway_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0007"
down_revision = "gateway_0006"


def upgrade() -> None:
    # cases folded before this revision have none until their next event arrives
    op.add_column("gateway_cases", sa.Column("facts", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("gateway_cases", "facts")
