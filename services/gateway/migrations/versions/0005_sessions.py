"""gateway: dashboard sign-in sessions (the session id stored hashed, with its expiry), and the
group each case of the read model was grouped into (the dashboard's drill-down)

Revision ID: gateway_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0005"
down_revision = "gateway_0004"


def upgrade() -> None:
    op.create_table(
        "gateway_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_sessions_expires", "gateway_sessions", ["expires_at"])
    op.add_column("gateway_cases", sa.Column("group_code", sa.String(32), nullable=True))
    op.create_index("ix_gateway_cases_group", "gateway_cases", ["hospital_code", "group_code"])
    # the cases grouped before: their DRG, else their DIP group, from the stored grouping result
    if op.get_bind().dialect.name == "sqlite":
        drg, dip = "json_extract(grouped, '$.drg')", "json_extract(grouped, '$.dip.group')"
    else:
        drg, dip = "(grouped::json ->> 'drg')", "(grouped::json -> 'dip' ->> 'group')"
    op.execute(f"UPDATE gateway_cases SET group_code = SUBSTR(COALESCE({drg}, {dip}), 1, 32) "
               "WHERE grouped IS NOT NULL")
