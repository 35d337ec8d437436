"""The quick bind conversions give the driver exactly what SQLAlchemy's own would."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from sqlalchemy import Date, DateTime, LargeBinary
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import bind_processor

DIALECT = create_async_engine("sqlite+aiosqlite://").dialect  # the driver loaded, never connected
TIMES = [datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC), datetime(2024, 3, 1, 8, 30, 15),
         datetime(1, 1, 1), datetime(999, 12, 31, 23, 59, 59, 999999),
         datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=8))), date(2024, 2, 29)]


def _sqlalchemy(type_, value):  # type: ignore[no-untyped-def]
    return type_.dialect_impl(DIALECT).bind_processor(DIALECT)(value)


def test_datetimes_and_dates_are_bound_as_sqlalchemy_binds_them() -> None:
    for type_ in (DateTime(), DateTime(timezone=True)):
        quick = bind_processor(DIALECT, type_)
        assert quick is not None
        assert [quick(v) for v in TIMES] == [_sqlalchemy(type_, v) for v in TIMES]
    quick = bind_processor(DIALECT, Date())
    assert quick is not None
    days = [date(2024, 2, 29), date(1, 1, 1), datetime(2024, 3, 1, 8, 30)]
    assert [quick(v) for v in days] == [_sqlalchemy(Date(), v) for v in days]


def test_bytes_go_to_sqlite_as_they_are() -> None:
    quick = bind_processor(DIALECT, LargeBinary())
    assert quick is not None
    assert quick(b"\x00\xff") == b"\x00\xff" and type(quick(b"\x00")) is bytes
    assert bytes(quick(bytearray(b"ab"))) == b"ab"
