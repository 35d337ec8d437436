"""Money and the other exact decimals of payment: `Decimal`, never a float (docs/domain.md §13).

Pure (pydantic only): every service's domain uses it. Amounts are yuan rounded half up to the
fen; weights and coefficients have 4 places, points 4, point values 6. They travel on the bus as
decimal strings (`shared.events.DecimalStr`) and are stored exactly (`shared.db.ExactDecimal`).

Field types for documents and inputs:
- `Ratio`, `Money`, `Weight`, `PointValue`: read **strictly** (policies and catalogues): decimal
  strings or integers, never JSON floats, never negative.
- `Amount`: read **tolerantly** (case input from hospital exports, which write JSON numbers):
  a float's shortest repr is kept (1234.56 stays 1234.56), rounded to the fen.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, GetPydanticSchema
from pydantic_core import core_schema

ZERO = Decimal("0")
ONE = Decimal("1")
FEN = Decimal("0.01")
WEIGHT_PLACES = Decimal("0.0001")
POINT_PLACES = Decimal("0.0001")
POINT_VALUE_PLACES = Decimal("0.000001")


def to_fen(amount: Decimal) -> Decimal:
    """Yuan rounded half up to the fen (§13)."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def to_weight(value: Decimal) -> Decimal:
    return value.quantize(WEIGHT_PLACES, rounding=ROUND_HALF_UP)


def to_points(value: Decimal) -> Decimal:
    return value.quantize(POINT_PLACES, rounding=ROUND_HALF_UP)


def to_point_value(value: Decimal) -> Decimal:
    return value.quantize(POINT_VALUE_PLACES, rounding=ROUND_HALF_UP)


def strict_decimal(value: Any) -> Decimal:
    """A non-negative decimal from a string or an integer; a JSON float is refused (it has
    already lost its exact value: 0.1 is not 0.1), so documents must say "0.1"."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("write numbers as decimal strings, not JSON floats")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not d.is_finite():
        raise ValueError("must be a finite number")
    if d < 0:
        raise ValueError("must not be negative")
    return d


def input_amount(value: Any) -> Decimal:
    """An amount from case input, to the fen; blank is zero (see the module docstring)."""
    if type(value) is Decimal and value.is_finite() and value >= 0:  # from a validated event
        return to_fen(value)
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool):
        raise ValueError("expected an amount")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal amount") from None
    if not d.is_finite() or d < 0:
        raise ValueError("must be a non-negative amount")
    return to_fen(d)


# Written as text: `str(d)` ("123.45"), in JSON and in `model_dump()` alike, by pydantic-core's own
# to-string serializer (the same text as a Python `lambda d: str(d)` serializer, without a Python
# call for each amount).
AS_TEXT = GetPydanticSchema(lambda tp, handler: {
    **handler(tp), "serialization": core_schema.to_string_ser_schema(when_used="always")})
Ratio = Annotated[Decimal, BeforeValidator(strict_decimal), AS_TEXT]
Money = Annotated[Decimal, BeforeValidator(strict_decimal), AfterValidator(to_fen), AS_TEXT]
Weight = Annotated[Decimal, BeforeValidator(strict_decimal), AfterValidator(to_weight), AS_TEXT]
PointValue = Annotated[Decimal, BeforeValidator(strict_decimal), AfterValidator(to_point_value), AS_TEXT]
Score = Annotated[Ratio, AfterValidator(to_points)]
Coefficient = Annotated[Ratio, AfterValidator(to_weight)]
Amount = Annotated[Decimal, BeforeValidator(input_amount)]
