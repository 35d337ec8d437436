"""review: the flag workflow (answers, decisions, deductions, their audit), hospital-level flags
and the figures the hospital-level rules read

Revision ID: review_0004
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ROW_ID, ExactDecimal, money

revision = "review_0004"
down_revision = "review_0003"


def upgrade() -> None:
    with op.batch_alter_table("review_flags") as b:
        b.alter_column("case_id", existing_type=sa.String(100), nullable=True)
        b.add_column(sa.Column("level", sa.String(8), nullable=False, server_default="case"))
        b.add_column(sa.Column("hospital_code", sa.String(32), nullable=True))
        b.add_column(sa.Column("region", sa.String(32), nullable=True))
        b.add_column(sa.Column("period", sa.String(7), nullable=True))
        b.add_column(sa.Column("answer", sa.Text, nullable=True))
        b.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("answered_by", sa.String(128), nullable=True))
        b.add_column(sa.Column("decision_reason", sa.Text, nullable=True))
        b.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("decided_by", sa.String(128), nullable=True))
        b.add_column(sa.Column("deduction", money(), nullable=True))
    op.create_index("ix_review_flags_hospital", "review_flags", ["hospital_code", "period"])
    # the flags raised before: their hospital from the stay they were raised on
    op.execute("UPDATE review_flags SET hospital_code = (SELECT s.hospital_code FROM review_stays s "
               "WHERE s.case_id = review_flags.case_id)")
    op.create_table(
        "review_flag_events",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("flag_id", ROW_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("hospital_code", sa.String(32), nullable=True),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_review_flag_events_flag", "review_flag_events", ["flag_id"])
    op.create_index("ix_review_flag_events_at", "review_flag_events", ["at"])
    op.create_table(
        "review_hospital_runs",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("rules", sa.String(64), nullable=False),
        sa.Column("cases", sa.Integer, nullable=False),
        sa.Column("hospitals", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("raised", sa.Integer, nullable=False),
        sa.Column("superseded", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_review_hospital_runs_period", "review_hospital_runs", ["region", "period"])
    op.create_table(
        "review_hospital_figures",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("hospital_level", sa.Integer, nullable=True),
        sa.Column("psn_key", sa.String(64), nullable=False),
        sa.Column("admission_date", sa.Date, nullable=True),
        sa.Column("discharge_date", sa.Date, nullable=True),
        sa.Column("drg", sa.String(8), nullable=False),
        sa.Column("weight", ExactDecimal(12, 4), nullable=True),
        sa.Column("case_type", sa.String(16), nullable=True),
        sa.Column("discharge_way", sa.Integer, nullable=True),
        sa.Column("planned", sa.Boolean, nullable=False),
        sa.Column("withdrawn", sa.Boolean, nullable=False),
    )
    op.create_index("ix_review_hospital_figures_region", "review_hospital_figures", ["region", "discharge_date"])
