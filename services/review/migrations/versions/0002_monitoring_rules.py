"""review: monitoring rules with parameters per region and period, flag history, regional
self-pay figures

Revision ID: review_0002
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, money

revision = "review_0002"
down_revision = "review_0001"


def upgrade() -> None:
    op.add_column("review_stays", sa.Column("context", sa.Text, nullable=True))
    op.add_column("review_results", sa.Column("rules", sa.String(64), nullable=True))
    op.create_table(
        "review_flags",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(100), nullable=False),
        sa.Column("review_version", sa.Integer, nullable=False),
        sa.Column("list_version", sa.Integer, nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("related_case_id", sa.String(100), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("rules", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_flags_case", "review_flags", ["case_id", "status"])
    op.create_index("ix_review_flags_rule", "review_flags", ["rule", "status"])
    op.create_table(
        "review_group_shares",
        sa.Column("share_key", sa.String(140), primary_key=True),
        sa.Column("cases", sa.Integer, nullable=False),
        sa.Column("total_cost", money(), nullable=False),
        sa.Column("own_pay", money(), nullable=False),
    )
    op.create_table(
        "review_rule_versions",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("rules_id", sa.String(64), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("rules_id", "version", name="uq_review_rule_versions"),
    )
    op.create_index("ix_review_rule_versions_region", "review_rule_versions", ["region", "valid_from"])
