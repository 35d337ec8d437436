"""pricer: DIP policy versions with their catalogues; the payment method of each priced case

Revision ID: pricer_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "pricer_0005"
down_revision = "pricer_0004"


def upgrade() -> None:
    op.create_table(
        "pricer_dip_policies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("catalogue_id", sa.String(64), nullable=False),
        sa.Column("catalogue_version", sa.Integer, nullable=False),
        sa.Column("catalogue", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("policy_id", "version", name="uq_pricer_dip_policies_version"),
    )
    op.create_index("ix_pricer_dip_policies_region", "pricer_dip_policies", ["region", "valid_from"])
    with op.batch_alter_table("pricer_results") as t:
        t.add_column(sa.Column("method", sa.String(8), nullable=True))
        t.add_column(sa.Column("dip_group", sa.Text, nullable=True))
