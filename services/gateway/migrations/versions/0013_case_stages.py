"""gateway: which stages hold a result of a case, kept on its row (`stages`, one bit a stage in
the read model's order: received 1, grouped 2, priced 4, reviewed 8), so that the fold's read of
the stored cases (`load_cases`) needs no lookup of their stage results. Filled from the stored
results.

Revision ID: gateway_0013
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0013"
down_revision = "gateway_0012"


def upgrade() -> None:
    op.add_column("gateway_cases", sa.Column("stages", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE gateway_cases SET stages = (SELECT coalesce(sum(CASE r.stage WHEN 'received' THEN 1 "
               "WHEN 'grouped' THEN 2 WHEN 'priced' THEN 4 WHEN 'reviewed' THEN 8 ELSE 0 END), 0) "
               "FROM gateway_case_results AS r WHERE r.case_id = gateway_cases.case_id)")


def downgrade() -> None:
    op.drop_column("gateway_cases", "stages")
