"""review: an index on the hospital-level figures by person and hospital (the database counts
31-day readmissions per hospital and period)

Revision ID: review_0007
"""

from alembic import op

revision = "review_0007"
down_revision = "review_0006"


def upgrade() -> None:
    op.create_index("ix_review_hospital_figures_person", "review_hospital_figures", ["psn_key", "hospital_code"])


def downgrade() -> None:
    op.drop_index("ix_review_hospital_figures_person", table_name="review_hospital_figures")
