"""The event envelope and the four stage events.

Events are immutable, past tense and versioned. They are written strictly (every field
validated, money and weights as decimal strings) and read tolerantly (unknown fields ignored),
so a newer producer never breaks an older consumer. The message key on the bus is `case_id`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.dip import DipGrouping
from shared.money import AS_TEXT

CASE_RECEIVED = "case-received"
CASE_GROUPED = "case-grouped"
CASE_PRICED = "case-priced"
CASE_FLAGGED = "case-flagged"
TOPICS = (CASE_RECEIVED, CASE_GROUPED, CASE_PRICED, CASE_FLAGGED)  # a case through the stages
# Events between two stages that are not a case's way through the pipeline (the gateway's read
# model does not fold them): review's special-case decisions (特例单议: the pricer prices the
# case again with them), a period pre-settled (pricer -> review runs the hospital-level rules),
# a flag's deduction confirmed (review -> the pricer's next settlement applies it).
SPECIAL_CASE_DECIDED = "special-case-decided"
PERIOD_SETTLED = "period-settled"
DEDUCTION_CONFIRMED = "deduction-confirmed"
WORKFLOW_TOPICS = (SPECIAL_CASE_DECIDED, PERIOD_SETTLED, DEDUCTION_CONFIRMED)
SOURCE_TOPICS = TOPICS + WORKFLOW_TOPICS  # every topic a stage publishes to (dead letters aside)
DEAD_LETTER_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    return topic + DEAD_LETTER_SUFFIX


ALL_TOPICS = SOURCE_TOPICS + tuple(dead_letter_topic(t) for t in SOURCE_TOPICS)

# Money and weights travel as decimal strings ("123.45", `str(d)`), never as JSON floats.
DecimalStr = Annotated[Decimal, AS_TEXT]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CaseFacts(BaseModel):
    """What every stage downstream of ingest needs to know about the stay (carried along)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    hospital_code: str
    setl_id: str
    list_version: int = 1
    region: str = "default"
    psn_key: str  # a keyed hash of the person number: never the raw identifier
    admission_date: date | None = None
    discharge_date: date | None = None
    insurance_type: str | None = None
    total_cost: DecimalStr | None = None
    fees: dict[str, DecimalStr] = Field(default_factory=dict)  # med_chrgitm 01–14 -> yuan
    patient_share: DecimalStr | None = None  # 自付 + 自费
    treatment_region: str | None = None  # where care was given (off-site cases differ)
    planned_readmission: bool = False  # days_rinp_flag_31 = "2": a readmission within 31 days is planned
    withdrawn: bool = False  # interface 4102: out of settlement, kept in history
    own_pay: DecimalStr | None = None  # 自费 (psn_ownpay): items outside the insurance's lists
    principal_diagnosis: str | None = None  # 主要诊断 code (monitoring rules read it)
    procedures: tuple[str, ...] = ()  # procedure codes, the main one first
    discharge_way: int | None = None  # 离院方式 (dscg_way): 1 医嘱离院, 2 医嘱转院, 4 非医嘱离院, …
    icu_hours: int = 0  # Σ intensive-care stays (icuinfo scs_cutd_sum_dura), whole hours
    ventilation_hours: int = 0  # invasive ventilation (vent_used_dura), whole hours


class CaseReceived(_Payload):
    """A settlement list was accepted and stored verbatim by ingest."""

    facts: CaseFacts
    sex: int | None
    age: int | None
    age_days: int | None = None
    birth_weight: int | None = None
    dept: str | None = None
    los: int | None = None
    leaving_type: int | None = None
    diagnoses: list[str]
    procedures: list[str] = Field(default_factory=list)


class CcLift(BaseModel):
    """A secondary diagnosis that alone lifts the case into its CC/MCC group: grouped without it,
    the case falls to `drg_without` (same ADRG). The grouper fills the codes and the lower group;
    the pricer adds the lower group's mean cost from the policy in force (review's 高套 rule)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    codes: list[str]  # the lifting secondary diagnosis (one: two alone could not each lift)
    level: Literal["MCC", "CC"]
    drg_without: str
    drg_without_mean_cost: DecimalStr | None = None


class CaseGrouped(_Payload):
    """The grouper assigned a DRG (or failed to, with a status saying why)."""

    facts: CaseFacts
    scheme_id: str
    code_mode: Literal["raw", "mapped"] = "raw"
    mdc: str
    adrg: str
    drg: str
    status: str
    drg_name: str | None = None
    grouping_version: int = 1
    dip: DipGrouping | None = None  # DIP (§5), when a catalogue is in force where care was given
    cc_lift: CcLift | None = None  # when one secondary diagnosis alone makes the CC/MCC group


class CaseFlag(BaseModel):
    """One monitoring rule that fired on a case: its stable code, severity (high | medium | low)
    and the evidence a reviewer judges it by (related case ids, the numbers and the parameters
    that made it fire)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    rule: str
    message: str
    related_case_id: str | None = None
    severity: str = "medium"
    evidence: dict[str, Any] = Field(default_factory=dict)


class CasePriced(_Payload):
    """The pricer computed the case's payment; `breakdown` holds every figure used."""

    facts: CaseFacts
    drg: str
    status: str  # PRICED | NOT_GROUPED | NO_WEIGHT | NO_POLICY | …
    policy_id: str | None = None
    weight: DecimalStr | None = None
    base_rate: DecimalStr | None = None
    coefficient: DecimalStr | None = None
    payment_standard: DecimalStr | None = None
    case_type: str | None = None  # normal | high_outlier | low_outlier | out_of_scope | …
    payment: DecimalStr | None = None
    fund_payment: DecimalStr | None = None
    breakdown: dict[str, Any] = Field(default_factory=dict)
    # what monitoring reads of the grouping and the policy in force, whatever the case type
    adrg: str | None = None
    dip_group: str | None = None  # set when the case was priced by DIP
    hospital_level: int | None = None
    group_mean_cost: DecimalStr | None = None  # the region mean of the case's group
    primary_care: bool = False  # a primary-care group (基层病种) of the DIP catalogue
    cc_lift: CcLift | None = None


class CaseFlagged(_Payload):
    """Review ran its monitoring rules on the case; `flags` may be empty (reviewed, clean)."""

    facts: CaseFacts
    drg: str
    flags: list[CaseFlag] = Field(default_factory=list)
    rules: str | None = None  # the monitoring parameters used: "<region> v<version>" or "default"
    # days from the same person's previous discharge at the same hospital to this admission (None:
    # no earlier stay known): the 15/31-day readmission indicators count it (§12)
    readmission_days: int | None = None


class PeriodSettled(_Payload):
    """A month was pre-settled (a new statement version): review runs the period's hospital-level
    rules (and the quarter's when the month closes one). Keyed `settlement:<policy>:<period>`."""

    policy_id: str
    region: str
    period: str  # YYYY-MM
    version: int
    hospitals: list[str] = Field(default_factory=list)
    # each hospital's statement lines (item -> decimal string or text): the gateway issues the
    # month's feedback to each hospital with them
    statements: dict[str, dict[str, str]] = Field(default_factory=dict)


class DeductionConfirmed(_Payload):
    """A bureau reviewer confirmed a monitoring flag with a deduction: the hospital's next
    settlement is lowered by `amount`. Keyed `flag:<id>`; one per flag (a decision is final)."""

    flag_id: int
    hospital_code: str
    amount: DecimalStr
    rule: str
    case_id: str | None = None  # None: a hospital-level flag
    period: str | None = None  # the flag's period (the case's discharge month, or the rule's period)
    decided_by: str
    decided_at: datetime


class SpecialCaseDecided(_Payload):
    """The special-case panel decided an application (特例单议, §10): `decision` counts the case's
    decisions (1: the panel's, 2: the appeal's); the latest one holds. The pricer prices the
    case again with it, as a new priced version: pay by item, the decided amount ("adjust the
    standard"), or as priced before (reject)."""

    hospital_code: str
    application_id: int
    decision: int
    outcome: Literal["pay_by_item", "adjust_standard", "reject"]
    amount: DecimalStr | None = None
    reason: str = ""


PAYLOADS: dict[str, type[_Payload]] = {
    CASE_RECEIVED: CaseReceived,
    CASE_GROUPED: CaseGrouped,
    CASE_PRICED: CasePriced,
    CASE_FLAGGED: CaseFlagged,
    SPECIAL_CASE_DECIDED: SpecialCaseDecided,
    PERIOD_SETTLED: PeriodSettled,
    DEDUCTION_CONFIRMED: DeductionConfirmed,
}
SCHEMA_VERSION = 1
_EVENT_TYPES = {p: t for t, p in PAYLOADS.items()}


_SPARE: list[int] = []  # random 128-bit numbers from os.urandom, taken 256 at a time (a call each cost more)
os.register_at_fork(after_in_child=_SPARE.clear)  # a forked process never repeats its parent's


def random128() -> int:
    """128 random bits (os.urandom), for the ids made per event or per received list."""
    try:
        return _SPARE.pop()  # one step under the GIL: never the same number twice
    except IndexError:
        block = os.urandom(16 * 256)
        _SPARE.extend(int.from_bytes(block[i:i + 16]) for i in range(16, len(block), 16))
        return int.from_bytes(block[:16])


_V7_RANDOM = 0xFFF << 64 | (1 << 62) - 1  # rand_a (12 bits) and rand_b (62 bits) of a UUIDv7
_V7 = 0x7 << 76 | 0b10 << 62  # its version (7) and variant (RFC 9562) bits
_MS_PREFIX: tuple[int, str] = (-1, "")  # the last millisecond and its text ("xxxxxxxx-xxxx-")


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): a millisecond timestamp, then random bits. Ids made later sort later,
    so the inbox indexes that every consumed event id goes into grow at their end instead of
    everywhere (which kept rewriting pages all over the database). Written as
    str(uuid.UUID(int=...)) writes it, without building the UUID; a millisecond's text is made
    once for the events of that millisecond."""
    global _MS_PREFIX
    ms = time.time_ns() // 1_000_000
    last, prefix = _MS_PREFIX
    if ms != last:
        h = f"{ms & (1 << 48) - 1:012x}"
        prefix = f"{h[:8]}-{h[8:]}-"
        _MS_PREFIX = (ms, prefix)
    h = f"{random128() & _V7_RANDOM | _V7:020x}"  # the low 80 bits: version, rand_a, variant, rand_b
    return f"{prefix}{h[:4]}-{h[4:8]}-{h[8:]}"


class _EnvelopeFields(BaseModel):
    """The envelope as it is checked when the quick path of `Envelope.from_bytes` does not apply
    (and for an envelope built with `Envelope(...)`): read tolerantly, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    event_type: str
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime
    case_id: str
    correlation_id: str
    producer: str
    payload: dict[str, Any]


_HEADER = ("event_id", "event_type", "schema_version", "occurred_at", "case_id", "correlation_id",
           "producer")
_TEXT = ("event_id", "event_type", "case_id", "correlation_id", "producer")


class Envelope:
    """An event on the bus: who made it, when, for which case, and its payload.

    Each message is decoded once and its payload validated once: `from_bytes` checks the
    envelope and keeps the payload as the JSON object it arrived as (`payload`, which is what
    the read model and the stored copies keep); `typed_payload()` validates it into its model
    the first time it is asked for and keeps that model. An envelope made by `new` holds the
    producer's validated model and its JSON, written once (`to_bytes` puts the envelope around
    it; `payload` parses it only if someone asks for the dict). Immutable: the fields are
    read-only."""

    __slots__ = ("_head", "_payload", "_typed", "_json", "_bytes")

    _head: tuple[str, str, int, datetime, str, str, str]  # in the order of `_HEADER`
    _payload: dict[str, Any] | None
    _typed: _Payload | None
    _json: bytes | None
    _bytes: bytes | None

    event_id: str = property(lambda self: self._head[0])  # type: ignore[assignment]
    event_type: str = property(lambda self: self._head[1])  # type: ignore[assignment]
    schema_version: int = property(lambda self: self._head[2])  # type: ignore[assignment]
    occurred_at: datetime = property(lambda self: self._head[3])  # type: ignore[assignment]
    case_id: str = property(lambda self: self._head[4])  # type: ignore[assignment]
    correlation_id: str = property(lambda self: self._head[5])  # type: ignore[assignment]
    producer: str = property(lambda self: self._head[6])  # type: ignore[assignment]

    def __init__(self, **fields: Any) -> None:
        """Validates the fields (raises `pydantic.ValidationError`): `payload` is a JSON object."""
        checked = _EnvelopeFields.model_validate(fields)
        self._head = tuple(getattr(checked, name) for name in _HEADER)  # type: ignore[assignment]
        self._payload, self._typed, self._json, self._bytes = checked.payload, None, None, None

    @classmethod
    def _of(cls, head: tuple[Any, ...], payload: dict[str, Any] | None, typed: _Payload | None,
            json: bytes | None) -> Envelope:
        env = cls.__new__(cls)
        env._head = head  # type: ignore[assignment]
        env._payload, env._typed, env._json, env._bytes = payload, typed, json, None
        return env

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._head == other._head and self.payload == other.payload

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Envelope(event_id={self.event_id!r}, event_type={self.event_type!r}, "
                f"case_id={self.case_id!r}, producer={self.producer!r})")

    @classmethod
    def new(
        cls, payload: _Payload, *, case_id: str, correlation_id: str, producer: str
    ) -> Envelope:
        event_type = _EVENT_TYPES.get(type(payload)) or next(
            t for t, p in PAYLOADS.items() if isinstance(payload, p))
        # the payload is a validated model: written to JSON once, straight to bytes
        return cls._of((new_event_id(), event_type, SCHEMA_VERSION, datetime.now(UTC), case_id,
                        correlation_id, producer), None, payload,
                       payload.__pydantic_serializer__.to_json(payload))

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a JSON-ready dict (as received; for a new event, as it will be sent)."""
        if self._payload is None:
            self._payload = orjson.loads(self._json)  # type: ignore[arg-type]
        return self._payload  # type: ignore[return-value]

    @property
    def payload_json(self) -> bytes:
        """The payload as JSON: for a new event, the text `to_bytes` sends (never parsed back);
        for a decoded one, its text as received when the envelope is in the shape `to_bytes`
        writes (else written again from the dict)."""
        return self._json if self._json is not None else orjson.dumps(self._payload)

    def typed_payload(self) -> Any:
        """The payload as its pydantic model; raises `pydantic.ValidationError` if malformed.
        Validated once: the model is kept."""
        if self._typed is None:
            self._typed = PAYLOADS[self.event_type].model_validate(self._payload)
        return self._typed

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            head = orjson.dumps(dict(zip(_HEADER, self._head, strict=True)))
            self._bytes = b"".join((head[:-1], b',"payload":', self.payload_json, b"}"))
        return self._bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Raises `ValueError` (incl. pydantic's) on anything that is not a valid envelope."""
        data = orjson.loads(raw)
        head = _quick_header(data)
        json = None
        if head is None:  # not in the shape this code writes: the full check says what is wrong
            checked = _EnvelopeFields.model_validate(data)
            head, payload = tuple(getattr(checked, name) for name in _HEADER), checked.payload
        else:
            payload = data["payload"]
            json = _payload_text(raw, data)
        if head[1] not in PAYLOADS:
            raise ValueError(f"unknown event_type {head[1]!r}")
        return cls._of(head, payload, None, json)


_PAYLOAD_KEY = b'"payload":'


def _payload_text(raw: bytes, data: dict[str, Any]) -> bytes | None:
    """The payload's JSON text inside `raw`, for an envelope that `_quick_header` read: in the
    shape `to_bytes` writes, the header's seven scalar fields first and the payload last, so the
    payload is what follows the one `"payload":` up to the closing brace. A `"payload":` inside
    a string is written `\\"payload\\":`, so the one found is a key; anything else (a key named
    payload in the payload, another field, another order) gives None."""
    if (len(data) != len(_HEADER) + 1 or type(data.get("schema_version")) is not int
            or next(reversed(data)) != "payload" or raw[-1:] != b"}" or raw.count(_PAYLOAD_KEY) != 1):
        return None
    at = raw.find(_PAYLOAD_KEY)
    return raw[at + len(_PAYLOAD_KEY):-1] if raw[at - 1:at] == b"," else None


def _quick_header(data: Any) -> tuple[Any, ...] | None:
    """The header of a decoded envelope in exactly the shape `to_bytes` writes (text fields as
    strings, an integer schema version, an ISO 8601 timestamp, an object payload), or None:
    anything else goes through the full validation."""
    if type(data) is not dict or type(data.get("payload")) is not dict:
        return None
    g = data.get
    head = (g("event_id"), g("event_type"), g("schema_version", SCHEMA_VERSION), g("occurred_at"),
            g("case_id"), g("correlation_id"), g("producer"))
    at = head[3]
    if (type(head[0]) is not str or type(head[1]) is not str or type(head[2]) is not int
            or type(at) is not str or type(head[4]) is not str or type(head[5]) is not str
            or type(head[6]) is not str or len(at) < 19 or at[10] != "T" or at[4] != "-"):
        return None
    try:
        occurred_at = datetime.fromisoformat(at)
    except ValueError:
        return None
    return head[:3] + (occurred_at,) + head[4:]
