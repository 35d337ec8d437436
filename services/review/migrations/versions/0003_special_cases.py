"""review: special-case review (特例单议): each priced case's figures, applications, the panel's
decisions and members, a counter row per region and quarter, the append-only audit

Revision ID: review_0003
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, money

revision = "review_0003"
down_revision = "review_0002"


def upgrade() -> None:
    op.create_table(
        "review_case_figures",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("period", sa.String(6), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("complex", sa.Boolean, nullable=False),
        sa.Column("withdrawn", sa.Boolean, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
    )
    op.create_index("ix_review_case_figures_period", "review_case_figures", ["region", "period"])
    op.create_table(
        "review_special_quota",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("period", sa.String(6), primary_key=True),
        sa.Column("applications", sa.Integer, nullable=False),
    )
    op.create_table(
        "review_special_cases",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False, unique=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("period", sa.String(6), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("amount", money(), nullable=True),
        sa.Column("applied_by", sa.String(128), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("appeal_text", sa.Text, nullable=True),
        sa.Column("appealed_by", sa.String(128), nullable=True),
        sa.Column("appealed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_special_cases_period", "review_special_cases",
                    ["region", "period", "hospital_code"])
    op.create_table(
        "review_special_decisions",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("application_id", ROW_ID, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("amount", money(), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("member", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("application_id", "round", name="uq_review_special_decisions_round"),
    )
    op.create_table(
        "review_panel_members",
        sa.Column("token_id", sa.String(16), primary_key=True),
        sa.Column("hospitals", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "review_audit",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_review_audit_at", "review_audit", ["at"])
