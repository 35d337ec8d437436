"""pricer: region, length of stay and the pricing input on priced cases (history, simulation)

Revision ID: pricer_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "pricer_0003"
down_revision = "pricer_0002"


def upgrade() -> None:
    with op.batch_alter_table("pricer_results") as t:
        t.add_column(sa.Column("region", sa.String(32), nullable=True))
        t.add_column(sa.Column("los", sa.Integer, nullable=True))
        t.add_column(sa.Column("case_input", sa.Text, nullable=True))
    op.create_index("ix_pricer_results_history", "pricer_results", ["region", "discharge_date"])
