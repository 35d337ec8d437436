"""gateway: token expiry, who and from where in the audit, flagged cases in the read model

Revision ID: gateway_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0003"
down_revision = "gateway_0002"


def upgrade() -> None:
    op.add_column("gateway_tokens", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("gateway_audit", sa.Column("actor", sa.String(128), nullable=True))
    op.add_column("gateway_audit", sa.Column("client", sa.String(64), nullable=True))
    op.create_index("ix_gateway_audit_at", "gateway_audit", ["at"])
    op.add_column("gateway_cases", sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false()))
    # cases reviewed before: a stored review result names a rule only when it carries a flag
    op.execute("UPDATE gateway_cases SET flagged = TRUE WHERE reviewed LIKE '%\"rule\":%'")
