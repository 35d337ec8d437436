"""The shared pure helpers: money rounding and field types, the error family, the JSON Lines
reader."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from shared.errors import Conflict, DomainError, Invalid, NotFound, invalid_from_validation
from shared.jsonl import read_jsonl
from shared.money import Amount, Money, to_fen, to_point_value


def test_to_fen_rounds_half_up_and_point_values_keep_six_places() -> None:
    assert to_fen(Decimal("0.005")) == Decimal("0.01")
    assert to_fen(Decimal("-0.005")) == Decimal("-0.01")
    assert to_fen(Decimal("12.344999")) == Decimal("12.34")
    assert to_point_value(Decimal("1.23456789")) == Decimal("1.234568")


class _Doc(BaseModel):
    fee: Money
    cost: Amount


def test_documents_refuse_floats_but_case_input_keeps_a_floats_shortest_repr() -> None:
    assert _Doc(fee="12.345", cost=1234.56).fee == Decimal("12.35")
    assert _Doc(fee="1", cost=1234.56).cost == Decimal("1234.56")
    with pytest.raises(ValidationError, match="decimal strings"):
        _Doc(fee=0.1, cost="1")
    with pytest.raises(ValidationError, match="negative"):
        _Doc(fee="-1", cost="1")


def test_every_domain_error_has_a_code_a_status_and_a_list_of_details() -> None:
    assert NotFound("no case 'x'", code="CASE_NOT_FOUND", field="case_id").body() == {"error": {
        "code": "CASE_NOT_FOUND", "message": "no case 'x'", "field": "case_id",
        "details": [{"field": "case_id", "code": "CASE_NOT_FOUND", "message": "no case 'x'"}]}}
    assert (NotFound.status, Conflict.status, Invalid.status) == (404, 409, 422)
    assert DomainError("upstream down", code="UPSTREAM_UNAVAILABLE", status=503).status == 503
    assert Invalid("bad").body()["error"]["details"] == []


def test_a_validation_error_names_the_first_field_and_lists_every_one() -> None:
    with pytest.raises(ValidationError) as e:
        _Doc.model_validate({"fee": 0.5})
    err = invalid_from_validation(e.value.errors())
    assert err.status == 422 and err.code == "INVALID_FIELD" and err.field == "fee"
    assert [(d["field"], d["code"]) for d in err.details] == [("fee", "value_error"), ("cost", "missing")]


def test_jsonl_reader_skips_and_reports_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"fee": "1.00", "cost": 2}\n\n[1]\nnot json\n{"fee": 0.1, "cost": 1}\n{"fee": "3", "cost": "4"}\n')
    errors: list[tuple[int, str]] = []
    seen: list[int] = []
    docs = list(read_jsonl(f, _Doc.model_validate, lambda n, why: errors.append((n, why)),
                           on_bytes=seen.append))
    assert [d.fee for d in docs] == [Decimal("1.00"), Decimal("3.00")]
    assert [n for n, _ in errors] == [3, 4, 5]
    assert "not a JSON object" in errors[0][1] and errors[2][1].startswith("fee:")
    assert sum(seen) == f.stat().st_size
