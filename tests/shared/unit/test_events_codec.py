"""The stage events as they are written and read: decimal strings written exactly as `str(d)`
(in the JSON and in `model_dump()`), every payload type read back to the model it was written
from, unknown fields ignored, malformed payloads refused with the errors the consumers turn
into dead letters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, PlainSerializer, TypeAdapter

from shared.events import (
    CASE_GROUPED,
    CASE_PRICED,
    CASE_RECEIVED,
    PAYLOADS,
    CaseFacts,
    CaseFlag,
    CaseFlagged,
    CaseGrouped,
    CasePriced,
    CaseReceived,
    CcLift,
    DecimalStr,
    DeductionConfirmed,
    Envelope,
    PeriodSettled,
    SpecialCaseDecided,
)

# how decimals were written before pydantic-core wrote them itself: a Python serializer
_FormerDecimalStr = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str)]


class _Former(BaseModel):
    d: _FormerDecimalStr | None = None
    m: dict[str, _FormerDecimalStr] = {}


class _Now(BaseModel):
    d: DecimalStr | None = None
    m: dict[str, DecimalStr] = {}


EDGES = ["1E+2", "1e2", "-0", "0", "0.00", "-0.00", "2533.50", "1.10", "0.0000001", "5E-10",
         "1.0E+3", "123456789012345678901234567890.123456", "-367.37", "10.000000", "43.2200"]


@pytest.mark.parametrize("text", EDGES)
def test_a_decimal_is_written_as_the_former_serializer_wrote_it(text: str) -> None:
    d = Decimal(text)
    former, now = _Former(d=d, m={"01": d}), _Now(d=d, m={"01": d})
    assert now.model_dump_json() == former.model_dump_json() == f'{{"d":"{d}","m":{{"01":"{d}"}}}}'
    assert now.model_dump() == former.model_dump() == {"d": str(d), "m": {"01": str(d)}}
    assert now.model_dump(mode="json") == former.model_dump(mode="json")


@given(st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(places=2, allow_nan=False,
                                                                         allow_infinity=False))
def test_any_finite_decimal_is_written_as_the_former_serializer_wrote_it(d: Decimal) -> None:
    assert _Now(d=d).model_dump_json() == _Former(d=d).model_dump_json()
    assert _Now(d=d).model_dump() == _Former(d=d).model_dump()


def test_the_json_schemas_still_say_decimal_strings() -> None:
    assert _Now.model_json_schema(mode="serialization")["properties"]["d"] == \
        _Former.model_json_schema(mode="serialization")["properties"]["d"]
    assert _Now.model_json_schema() == _Former.model_json_schema() | {"title": "_Now"}


def _facts(amount: Decimal) -> CaseFacts:
    return CaseFacts(hospital_code="H1", setl_id="S1", region="350500", psn_key="k" * 32,
                     admission_date=date(2024, 1, 2), discharge_date=date(2024, 1, 9), insurance_type="310",
                     total_cost=amount, fees={f"{i:02}": amount for i in range(1, 15)},
                     patient_share=Decimal("-0"), own_pay=Decimal("0.00"), principal_diagnosis="I21.000",
                     procedures=("36.0601",), discharge_way=1, icu_hours=3)


def _payloads(amount: Decimal) -> list[Any]:
    facts = _facts(amount)
    lift = CcLift(codes=["E11.900"], level="CC", drg_without="FR15", drg_without_mean_cost=amount)
    return [
        CaseReceived(facts=facts, sex=1, age=60, dept="A03", los=7, leaving_type=1,
                     diagnoses=["I21.000", "E11.900"], procedures=["36.0601"]),
        CaseGrouped(facts=facts, scheme_id="chs-drg-1.1", mdc="MDCF", adrg="FR1", drg="FR13",
                    status="SUCCESS", drg_name="急性心肌梗死", cc_lift=lift),
        CasePriced(facts=facts, drg="FR13", status="PRICED", policy_id="p", weight=Decimal("1.2345"),
                   base_rate=None, coefficient=Decimal("1E+2"), payment_standard=amount, case_type="normal",
                   payment=amount, fund_payment=Decimal("-0.00"),
                   breakdown={"rw": "1.2345", "points": "43.2200", "notes": []}, adrg="FR1",
                   hospital_level=3, group_mean_cost=Decimal("4963.52"), cc_lift=lift),
        CaseFlagged(facts=facts, drg="FR13", flags=[CaseFlag(rule="R1", message="m", evidence={"n": 2})],
                    rules="350500 v1", readmission_days=12),
        SpecialCaseDecided(hospital_code="H1", application_id=7, decision=1, outcome="adjust_standard",
                           amount=amount, reason="r"),
        PeriodSettled(policy_id="p", region="350500", period="2024-01", version=2, hospitals=["H1"],
                      statements={"H1": {"payment": "1.00"}}),
        DeductionConfirmed(flag_id=3, hospital_code="H1", amount=amount, rule="R1", case_id="H1-S1",
                           period="2024-01", decided_by="u", decided_at=datetime(2024, 2, 1, 8, tzinfo=UTC)),
    ]


def _former_json(value: Any) -> Any:
    """What the former serializer wrote, field by field: decimals as `str(d)`."""
    if isinstance(value, BaseModel):
        return {name: _former_json(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _former_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_former_json(v) for v in value]
    if isinstance(value, date):
        return TypeAdapter(type(value)).dump_python(value, mode="json")
    return value


def test_every_payload_type_is_covered() -> None:
    assert {type(p) for p in _payloads(Decimal(1))} == set(PAYLOADS.values())


@pytest.mark.parametrize("amount", [Decimal(t) for t in EDGES])
def test_every_payload_is_written_as_before_and_read_back_to_the_same_model(amount: Decimal) -> None:
    for payload in _payloads(amount):
        env = Envelope.new(payload, case_id="H1-S1", correlation_id="c", producer="test")
        assert env.payload_json == orjson.dumps(_former_json(payload))
        assert env.payload == orjson.loads(env.payload_json)
        back = Envelope.from_bytes(env.to_bytes())
        assert back.event_type == env.event_type and back.payload == env.payload
        typed = back.typed_payload()
        assert typed == payload and type(typed) is type(payload)
        assert typed.model_dump() == payload.model_dump()
        assert back.typed_payload() is typed  # validated once


def _envelope(event_type: str, payload: dict[str, Any]) -> Envelope:
    return Envelope.from_bytes(orjson.dumps({
        "event_id": "e1", "event_type": event_type, "schema_version": 1,
        "occurred_at": "2024-01-01T00:00:00+00:00", "case_id": "H1-S1", "correlation_id": "c",
        "producer": "test", "payload": payload}))


def test_unknown_fields_are_ignored_when_read() -> None:
    priced = _payloads(Decimal("1.10"))[2]
    doc = orjson.loads(priced.__pydantic_serializer__.to_json(priced))
    doc["from_a_newer_producer"] = {"x": 1}
    doc["facts"]["also_new"] = "y"
    env = _envelope(CASE_PRICED, doc)
    assert env.typed_payload() == priced
    assert env.payload["from_a_newer_producer"] == {"x": 1}  # the read model keeps what arrived


@pytest.mark.parametrize(("event_type", "change"), [
    (CASE_PRICED, {"payment": "1.2.3"}),
    (CASE_PRICED, {"payment": "NaN"}),
    (CASE_PRICED, {"weight": [1]}),
    (CASE_PRICED, {"status": None}),
    (CASE_PRICED, {"cc_lift": {"codes": ["E11.900"], "level": "XCC", "drg_without": "FR15"}}),
    (CASE_GROUPED, {"code_mode": "guessed"}),
    (CASE_GROUPED, {"facts": {"hospital_code": "H1"}}),
    (CASE_RECEIVED, {"diagnoses": "I21.000"}),
    (CASE_RECEIVED, {"facts": {"hospital_code": "H1", "setl_id": "S1", "psn_key": "k",
                               "fees": {"01": "abc"}}}),
])
def test_a_malformed_payload_is_refused_when_read(event_type: str, change: dict[str, Any]) -> None:
    payload = next(p for p in _payloads(Decimal("1.10")) if type(p) is PAYLOADS[event_type])
    doc = orjson.loads(payload.__pydantic_serializer__.to_json(payload)) | change
    with pytest.raises(pydantic.ValidationError):  # what the consumers dead-letter as invalid
        _envelope(event_type, doc).typed_payload()


def test_a_malformed_payload_is_refused_when_made() -> None:
    with pytest.raises(pydantic.ValidationError):
        CasePriced(facts=_facts(Decimal(1)), drg="FR13", status="PRICED", payment="lots")
    with pytest.raises(pydantic.ValidationError):
        CaseFacts(hospital_code="H1", setl_id="S1", psn_key="k", fees={"01": "Infinity"})


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"event_type": "case-priced"}',
                                 orjson.dumps({"event_id": "e", "event_type": "case-teleported",
                                               "occurred_at": "2024-01-01T00:00:00+00:00", "case_id": "c",
                                               "correlation_id": "c", "producer": "p", "payload": {}})])
def test_what_is_not_an_envelope_is_refused_when_decoded(raw: bytes) -> None:
    with pytest.raises(ValueError):  # pydantic's ValidationError is one
        Envelope.from_bytes(raw)


def test_event_ids_are_uuid7_sorting_by_time() -> None:
    import time
    import uuid

    from shared.events import new_event_id

    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        u = uuid.UUID(text)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, text)
    before = new_event_id()
    time.sleep(0.003)
    after = new_event_id()
    assert before < after
    assert abs((uuid.UUID(after).int >> 80) - time.time_ns() // 1_000_000) < 1000


def test_a_forked_process_draws_its_own_event_ids() -> None:
    import os

    from shared.events import new_event_id

    new_event_id()  # the parent holds spare random numbers now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id's random part, to the parent
        os.write(write, new_event_id()[14:].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() != new_event_id()[14:]


def test_a_decoded_event_keeps_its_payload_text_as_received() -> None:
    from shared.events import Envelope

    payload = CaseFlagged(facts=CaseFacts(hospital_code="H1", setl_id="S1", psn_key="k"), drg="AB11",
                          flags=[CaseFlag(rule="R", message='say "payload": here', evidence={"a": 1})])
    raw = Envelope.new(payload, case_id="H1-S1", correlation_id="c", producer="review").to_bytes()
    decoded = Envelope.from_bytes(raw)
    assert decoded.payload_json == payload.__pydantic_serializer__.to_json(payload)
    assert orjson.loads(decoded.payload_json) == decoded.payload
    # another shape (a key named payload inside it, another key order): written again from the dict
    for other in (raw.replace(b'"evidence":{"a":1}', b'"evidence":{"payload":1}'),
                  orjson.dumps(dict(reversed(orjson.loads(raw).items())))):
        again = Envelope.from_bytes(other)
        assert orjson.loads(again.payload_json) == again.payload == orjson.loads(other)["payload"]
