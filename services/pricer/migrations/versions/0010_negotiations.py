"""pricer: negotiation rounds (drafts published to hospitals, their comments and answers, what the
adopted version changed, the round's history)

Revision ID: pricer_0010
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID

revision = "pricer_0010"
down_revision = "pricer_0009"


def upgrade() -> None:
    op.create_table(
        "pricer_drafts",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("policy_id", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("opens", sa.Date, nullable=False),
        sa.Column("closes", sa.Date, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("published_by", sa.String(128), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("adopted_version", sa.Integer, nullable=True),
        sa.Column("adopted_from", sa.Date, nullable=True),
        sa.Column("adopted_by", sa.String(128), nullable=True),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("adoption_notes", sa.Text, nullable=True),
    )
    op.create_table(
        "pricer_draft_comments",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("draft_id", ROW_ID, nullable=False),
        sa.Column("item", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("counter_proposal", sa.String(200), nullable=True),
        sa.Column("commented_by", sa.String(128), nullable=False),
        sa.Column("commented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(12), nullable=True),
        sa.Column("answer_reason", sa.Text, nullable=True),
        sa.Column("answered_by", sa.String(128), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_pricer_draft_comments_draft", "pricer_draft_comments", ["draft_id", "hospital_code"])
    op.create_table(
        "pricer_draft_changes",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("draft_id", ROW_ID, nullable=False),
        sa.Column("item", sa.String(120), nullable=False),
        sa.Column("draft_value", sa.String(200), nullable=True),
        sa.Column("adopted_value", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("comment_ids", sa.Text, nullable=False),
    )
    op.create_index("ix_pricer_draft_changes_draft", "pricer_draft_changes", ["draft_id"])
    op.create_table(
        "pricer_draft_history",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("draft_id", ROW_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_pricer_draft_history_draft", "pricer_draft_history", ["draft_id"])


def downgrade() -> None:
    for table in ("pricer_draft_history", "pricer_draft_changes", "pricer_draft_comments", "pricer_drafts"):
        op.drop_table(table)
