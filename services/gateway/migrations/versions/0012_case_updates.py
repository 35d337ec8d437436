"""gateway: a case's row updated in place on PostgreSQL. Each stage's event changes the case's
status, and `ix_gateway_cases_hospital` (hospital_code, status) made every such update write a
new entry in each of the table's four indexes (an update of an indexed column is never HOT).
The index goes: a hospital's cases of one status are read in id order through
`ix_gateway_cases_hospital_id` (hospital_code, case_id), as the case list pages them, and the
counts per status are kept in gateway_case_counts. The table leaves 30 % of each page free
(`fillfactor` 70; pages written from now on; a row with its contribution and facts is about a
kilobyte) so that an update's new row version fits beside the old one (a HOT update: no index
entry). The grouped event still sets group_code, which `ix_gateway_cases_group` holds.

Revision ID: gateway_0012
"""

from alembic import op

revision = "gateway_0012"
down_revision = "gateway_0011"


def upgrade() -> None:
    op.drop_index("ix_gateway_cases_hospital", table_name="gateway_cases")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE gateway_cases SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE gateway_cases RESET (fillfactor)")
    op.create_index("ix_gateway_cases_hospital", "gateway_cases", ["hospital_code", "status"])
