"""An exact decimal is bound on SQLite as the integer SQLAlchemy's own conversion makes of it
(rounded half up to its scale), whatever the value's form."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import ExactDecimal, bind_processor, money

DIALECT = create_async_engine("sqlite+aiosqlite://").dialect  # the driver loaded, never connected
VALUES = [Decimal("12345.67"), Decimal("0.005"), Decimal("-0.005"), Decimal("0.004999"), Decimal("-2.345"),
          Decimal("1E+3"), Decimal("1.5E-3"), Decimal("-0"), Decimal("9999999999999.995"), Decimal("0.00"),
          7, -3, "12.345", "-0.015", 1.005]


@pytest.mark.parametrize("type_", [money(), ExactDecimal(10, 4), ExactDecimal(8, 0)])
def test_exact_decimals_are_bound_as_sqlalchemy_binds_them(type_: ExactDecimal) -> None:
    quick = bind_processor(DIALECT, type_)
    own = type_.dialect_impl(DIALECT).bind_processor(DIALECT)
    assert quick is not None and own is not None
    assert [quick(v) for v in VALUES] == [own(v) for v in VALUES]
    assert all(type(quick(v)) is int for v in VALUES)
    for bad in (Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises((InvalidOperation, ValueError, OverflowError)):
            quick(bad)
