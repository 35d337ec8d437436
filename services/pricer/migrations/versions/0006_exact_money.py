"""pricer: money never a float on disk; the unused `pricer_policies` of 0001 dropped

On SQLite a NUMERIC column holds a float (REAL). Every amount, weight and coefficient becomes an
exact integer count of 10^-scale (fen for yuan: `shared.db.ExactDecimal`): each stored value is
rewritten as that integer, rounded half up from the decimal it was written as, then the column
becomes BIGINT. On PostgreSQL NUMERIC is exact already: the yuan columns only widen to
NUMERIC(16, 2) (up to 10^14 yuan, as `shared.db.money()`).

Revision ID: pricer_0006
"""

from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision = "pricer_0006"
down_revision = "pricer_0005"

# table -> {column: (precision, scale)}
COLUMNS = {
    "pricer_results": {
        "weight": (10, 4), "base_rate": (16, 2), "coefficient": (8, 4), "payment_standard": (16, 2),
        "total_cost": (16, 2), "payment": (16, 2), "fund_payment": (16, 2),
    },
    "pricer_advances": {"amount": (16, 2)},
}
_BATCH = 10_000


def exact_units(value: object, scale: int) -> int | None:
    """A stored SQLite value (REAL, INTEGER or TEXT) as the integer count of 10^-scale, rounded
    half up. A REAL is read as the shortest decimal that gives it back (`repr`): the decimal the
    amount was written as, for amounts of up to 15 significant digits."""
    if value is None:
        return None
    return int(Decimal(repr(value) if isinstance(value, float) else str(value))
               .scaleb(scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _to_units(table: str, columns: dict[str, tuple[int, int]]) -> None:
    conn = op.get_bind()
    names = list(columns)
    last = 0
    while True:
        rows = conn.execute(sa.text(
            f"SELECT id, {', '.join(names)} FROM {table} WHERE id > :last ORDER BY id LIMIT {_BATCH}"),
            {"last": last}).all()
        if not rows:
            return
        conn.execute(sa.text(f"UPDATE {table} SET {', '.join(f'{n} = :{n}' for n in names)} WHERE id = :id"), [
            {"id": r[0], **{n: exact_units(v, columns[n][1]) for n, v in zip(names, r[1:], strict=True)}}
            for r in rows])
        last = rows[-1][0]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns in COLUMNS.items():
        if sqlite:
            _to_units(table, columns)
        with op.batch_alter_table(table) as t:
            for name, (precision, scale) in columns.items():
                t.alter_column(name, type_=sa.BigInteger() if sqlite else sa.Numeric(precision, scale),
                               existing_nullable=table != "pricer_advances")
    op.drop_table("pricer_policies")
