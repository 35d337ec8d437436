"""review: the panel's membership per quarter (a member is registered for a quarter with the
hospitals they are tied to); the members registered before keep their ties for every quarter
that has applications

Revision ID: review_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "review_0005"
down_revision = "review_0004"


def upgrade() -> None:
    op.create_table(
        "review_panel_quarters",
        sa.Column("token_id", sa.String(16), primary_key=True),
        sa.Column("period", sa.String(6), primary_key=True),
        sa.Column("hospitals", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_review_panel_quarters_period", "review_panel_quarters", ["period"])
    op.execute("INSERT INTO review_panel_quarters (token_id, period, hospitals, active, registered_by, registered_at) "
               "SELECT m.token_id, q.period, m.hospitals, m.active, m.registered_by, m.registered_at "
               "FROM review_panel_members m CROSS JOIN (SELECT DISTINCT period FROM review_special_cases) q")
    op.drop_table("review_panel_members")

