"""review: stays seen, review results, outbox, inbox

Revision ID: review_0001
"""

import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "review_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "review_stays",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("psn_key", sa.String(64), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("admission_date", sa.Date, nullable=True),
        sa.Column("discharge_date", sa.Date, nullable=True),
        sa.Column("drg", sa.String(8), nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
    )
    op.create_index("ix_review_stays_person", "review_stays", ["psn_key", "hospital_code"])
    op.create_table(
        "review_results",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("review_version", sa.Integer, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_messaging_tables(op, "review")
