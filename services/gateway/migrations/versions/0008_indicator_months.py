"""gateway: the indicator cells and rule counts by month alone (the dashboard's region-wide
periods: the primary keys start with the region)

Revision ID: gateway_0008
"""

from alembic import op

revision = "gateway_0008"
down_revision = "gateway_0007"


def upgrade() -> None:
    op.create_index("ix_gateway_indicator_cells_by_month", "gateway_indicator_cells", ["month"])
    op.create_index("ix_gateway_indicator_rules_by_month", "gateway_indicator_rules", ["month"])


def downgrade() -> None:
    op.drop_index("ix_gateway_indicator_rules_by_month", table_name="gateway_indicator_rules")
    op.drop_index("ix_gateway_indicator_cells_by_month", table_name="gateway_indicator_cells")
