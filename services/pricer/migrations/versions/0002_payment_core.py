"""pricer: versioned policies with audit, full price breakdown, settlement statements

A policy version is a row of `pricer_policy_versions` ((policy_id, version) unique, document
verbatim); `pricer_policies` of 0001 held the old one-version-per-id format, which the new
payment core cannot read: it is left as it was, unused.

A case is priced again (new row) for a new grouping version or a new policy version, so the
unique key of `pricer_results` now includes the policy id and version (docs/domain.md §13).

Revision ID: pricer_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "pricer_0002"
down_revision = "pricer_0001"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pricer_policy_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("scheme_id", sa.String(64), nullable=False),
        sa.Column("weights_version", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("policy_id", "version", name="uq_pricer_policy_versions"),
    )
    op.create_index("ix_pricer_policy_versions_region", "pricer_policy_versions",
                    ["region", "valid_from"])
    op.create_table(
        "pricer_policy_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("who", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("what", sa.Text, nullable=False),
    )
    op.create_table(
        "pricer_statements",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("weights_version", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "hospital_code", "period", "policy_id", "version",
                            name="uq_pricer_statements_version"),
    )
    op.create_index("ix_pricer_statements_hospital", "pricer_statements", ["hospital_code", "period"])
    with op.batch_alter_table("pricer_results") as t:
        t.add_column(sa.Column("policy_version", sa.Integer, nullable=True))
        t.add_column(sa.Column("weights_version", sa.String(64), nullable=True))
        t.add_column(sa.Column("case_type", sa.String(16), nullable=True))
        t.add_column(sa.Column("hospital_code", sa.String(32), nullable=True))
        t.add_column(sa.Column("treatment_region", sa.String(32), nullable=True))
        t.add_column(sa.Column("discharge_date", sa.Date, nullable=True))
        t.add_column(sa.Column("total_cost", sa.Numeric(14, 2), nullable=True))
        t.add_column(sa.Column("payment", sa.Numeric(14, 2), nullable=True))
        t.add_column(sa.Column("fund_payment", sa.Numeric(14, 2), nullable=True))
        t.add_column(sa.Column("breakdown", sa.Text, nullable=True))
        t.drop_constraint("uq_pricer_results_version", type_="unique")
        t.create_unique_constraint(
            "uq_pricer_results_version",
            ["case_id", "list_version", "grouping_version", "policy_id", "policy_version"])
    op.create_index("ix_pricer_results_case", "pricer_results", ["case_id"])
    op.create_index("ix_pricer_results_settlement", "pricer_results", ["policy_id", "discharge_date"])
