"""review: a priced case's hospital-level and special-case figures kept in its stay's row
(review_stays), where two more tables each repeated the stay's key, person and dates; the
stored figures are copied over, then the two tables dropped

Revision ID: review_0008
"""

import sqlalchemy as sa
from alembic import op

from shared.db import ExactDecimal

revision = "review_0008"
down_revision = "review_0007"

HOSPITAL = ("region", "hospital_level", "weight", "case_type", "discharge_way", "planned", "withdrawn")
SPECIAL = ("method", "complex", "figures")


def _copy(into: str, columns: tuple[str, ...], source: str) -> None:
    """Set `columns` of every row of `into` to those of the row of `source` with its case id."""
    names = ", ".join(columns)
    op.execute(f"UPDATE {into} SET ({names}) = (SELECT {names} FROM {source} s WHERE s.case_id = {into}.case_id) "
               f"WHERE EXISTS (SELECT 1 FROM {source} s WHERE s.case_id = {into}.case_id)")


def upgrade() -> None:
    with op.batch_alter_table("review_stays") as t:
        t.add_column(sa.Column("region", sa.String(32), nullable=True))
        t.add_column(sa.Column("hospital_level", sa.Integer, nullable=True))
        t.add_column(sa.Column("weight", ExactDecimal(12, 4), nullable=True))
        t.add_column(sa.Column("case_type", sa.String(16), nullable=True))
        t.add_column(sa.Column("discharge_way", sa.Integer, nullable=True))
        t.add_column(sa.Column("planned", sa.Boolean, nullable=True))
        t.add_column(sa.Column("withdrawn", sa.Boolean, nullable=True))
        t.add_column(sa.Column("method", sa.String(8), nullable=True))
        t.add_column(sa.Column("complex", sa.Boolean, nullable=True))
        t.add_column(sa.Column("figures", sa.Text, nullable=True))
    # every figures row was written with its stay, in the same transaction
    _copy("review_stays", HOSPITAL, "review_hospital_figures")
    _copy("review_stays", SPECIAL, "review_case_figures")
    op.create_index("ix_review_stays_region", "review_stays", ["region", "discharge_date"])
    op.drop_index("ix_review_hospital_figures_person", table_name="review_hospital_figures")
    op.drop_index("ix_review_hospital_figures_region", table_name="review_hospital_figures")
    op.drop_table("review_hospital_figures")
    op.drop_index("ix_review_case_figures_period", table_name="review_case_figures")
    op.drop_table("review_case_figures")


def downgrade() -> None:
    op.create_table(
        "review_case_figures",
        sa.Column("case_id", sa.String(100), primary_key=True),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("period", sa.String(6), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("complex", sa.Boolean, nullable=False),
        sa.Column("withdrawn", sa.Boolean, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
    )
    op.create_index("ix_review_case_figures_period", "review_case_figures", ["region", "period"])
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
    op.create_index("ix_review_hospital_figures_person", "review_hospital_figures", ["psn_key", "hospital_code"])
    op.execute("INSERT INTO review_hospital_figures (case_id, psn_key, hospital_code, admission_date, discharge_date, "
               "drg, " + ", ".join(HOSPITAL) + ") SELECT case_id, psn_key, hospital_code, admission_date, "
               "discharge_date, drg, " + ", ".join(HOSPITAL) + " FROM review_stays WHERE region IS NOT NULL")
    # the period: the discharge quarter "2024Q1"
    quarter = ("CAST(EXTRACT(YEAR FROM discharge_date) AS INTEGER) || 'Q' || "
               "((CAST(EXTRACT(MONTH FROM discharge_date) AS INTEGER) - 1) / 3 + 1)"
               if op.get_bind().dialect.name == "postgresql" else
               "strftime('%Y', discharge_date) || 'Q' || ((CAST(strftime('%m', discharge_date) AS INTEGER) - 1) / 3 + 1)")
    op.execute("INSERT INTO review_case_figures (case_id, hospital_code, region, period, method, complex, withdrawn, "
               f"figures) SELECT case_id, hospital_code, region, {quarter}, method, complex, withdrawn, figures "
               "FROM review_stays WHERE figures IS NOT NULL")
    op.drop_index("ix_review_stays_region", table_name="review_stays")
    with op.batch_alter_table("review_stays") as t:
        for name in ("figures", "complex", "method", *reversed(HOSPITAL)):
            t.drop_column(name)
