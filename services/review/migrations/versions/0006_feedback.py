"""review: the feedback channel (opinions of hospitals and doctors, triaged, answered, closed)

Revision ID: review_0006
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID

revision = "review_0006"
down_revision = "review_0005"


def upgrade() -> None:
    op.create_table(
        "review_feedback",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("category", sa.String(24), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(100), nullable=True),
        sa.Column("case_ids", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("sent_by", sa.String(128), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("triaged_by", sa.String(128), nullable=True),
        sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("triage_note", sa.Text, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("answered_by", sa.String(128), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_feedback_hospital", "review_feedback", ["hospital_code", "status"])
    op.create_index("ix_review_feedback_sent", "review_feedback", ["sent_at"])


def downgrade() -> None:
    op.drop_table("review_feedback")
