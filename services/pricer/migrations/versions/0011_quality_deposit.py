"""pricer: the quality deposit's return shares from adopted performance evaluations

Revision ID: pricer_0011
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, ExactDecimal

revision = "pricer_0011"
down_revision = "pricer_0010"


def upgrade() -> None:
    op.create_table(
        "pricer_deposit_returns",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("year", sa.String(4), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("score", ExactDecimal(7, 2), nullable=False),
        sa.Column("share", ExactDecimal(6, 4), nullable=False),
        sa.Column("evaluation_id", sa.String(64), nullable=False),
        sa.Column("adopted_by", sa.String(128), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pricer_deposit_returns_year", "pricer_deposit_returns", ["year", "hospital_code"])


def downgrade() -> None:
    op.drop_index("ix_pricer_deposit_returns_year", table_name="pricer_deposit_returns")
    op.drop_table("pricer_deposit_returns")
