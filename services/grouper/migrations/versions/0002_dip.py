"""grouper: DIP catalogues registered per region and period; the DIP group of each result

Revision ID: grouper_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "grouper_0002"
down_revision = "grouper_0001"


def upgrade() -> None:
    op.create_table(
        "grouper_dip_catalogues",
        sa.Column("catalogue_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("valid_from", sa.Date, primary_key=True),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("grouper_results") as batch:
        batch.add_column(sa.Column("dip_group", sa.Text, nullable=True))
