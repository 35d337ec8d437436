"""Ingest's domain core: from received bytes to a decision, and what a decision changes.

Pure: parsing (`national`), quality control (`qc`), the mapping onto the pipeline's
`case-received` event, and the stage's rules for a decided list (`record`): an accepted list
is a new version of its case unless it is identical to the newest one (a duplicate), a 4102
withdrawal adds a withdrawn version of each list it names (all or nothing), a rejected list
only records its problems. No web, bus or database imports: the handler loads the newest
versions, `record` decides, the handler stores the `Changes`.

Formats a list arrives in:

- `native`: the 4101 `input` node as JSON (setlinfo + diseinfo[] + oprninfo[] + iteminfo[] …),
  national field names (POST /api/v1/settlement-lists, JSON Lines imports);
- `4101`, `4101A`, `4102`: the national message envelope (POST /api/v1/hsa/{infno});
- `flat`: one CSV row of the documented flat layout (`csvformat`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import orjson

from services.ingest.domain import limits as lim
from services.ingest.domain import national as nat
from services.ingest.domain import qc
from shared.events import CaseFacts, CaseReceived, Envelope, random128

Format = Literal["native", "4101", "4101A", "4102", "flat"]
FORMATS: tuple[str, ...] = ("native", "4101", "4101A", "4102", "flat")
_WITHOUT_DICTIONARIES = tuple(r for r in qc.ALL_RULES
                              if r not in (qc.diagnoses_in_dictionary, qc.procedures_in_dictionary))
# History in the flat CSV layout carries only what grouping and pricing need.
FLAT_REQUIRED = {"4101A": ("setl_id", "psn_no", "fixmedins_code", "gend", "adm_time", "dscg_time")}


# Made once or more per list: plain slotted dataclasses, never changed once made (a frozen one sets
# each field through object.__setattr__, which cost more than the rest of making it).
@dataclass(slots=True)
class Accepted:
    fields: nat.CaseFields
    content_sha256: str  # of the list node as sent: the native and national forms of a list agree
    warnings: list[nat.Problem]
    treatment_region: str | None
    declared: date | None = None  # the day the list says it was declared (uploaded): 时效性


@dataclass(slots=True)
class Rejected:
    problems: list[nat.Problem]
    hospital_code: str | None = None
    forbidden: bool = False  # the caller may not submit for this hospital
    discharge_date: date | None = None  # when readable: rejected lists count in quality scores
    declared: date | None = None


@dataclass(frozen=True)
class Withdrawal:
    hospital_code: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (psn_no, setl_id)


Decision = Accepted | Rejected | Withdrawal


def problem(path: str, code: str, zh: str, en: str) -> nat.Problem:
    return nat.Problem(path, code, zh, en, "error")


def evaluate(fmt: str, doc: Any, *, caller_hospital: str | None,
             dictionaries: qc.Dictionaries | None, limits: lim.Limits = lim.DEFAULT,
             today: date | None = None, raw: bytes | None = None) -> Decision:
    """Bound, parse, check the caller and run QC. `doc` is decoded JSON (or a flat CSV row
    dict), decoded from `raw` when given; the list's dates are checked against `today` when
    given."""
    out_of_bounds = lim.check_document(fmt, doc, limits, raw)
    if out_of_bounds:  # nothing of it is read further (its size is what the bounds prevent)
        return Rejected(out_of_bounds)
    header: nat.HsaHeader | None = None
    kind: Literal["4101", "4101A"] = "4101A" if fmt == "4101A" else "4101"
    required = qc.REQUIRED_FIELDS
    try:
        if fmt == "native":
            sl = nat.parse_settlement_list(doc)
            if not sl.iteminfo:
                kind = "4101A"  # without fee nodes it is the reduced list
        elif fmt == "flat":
            sl = nat.parse_native(doc)
            kind, required = "4101A", FLAT_REQUIRED
        elif fmt in ("4101", "4101A", "4102"):
            msg = nat.parse_message(fmt, doc)
            if fmt == "4102":
                data = msg.input.data  # type: ignore[union-attr]
                hospital = msg.fixmedins_code or ""
                if caller_hospital is not None and hospital != caller_hospital:
                    return Rejected([_mismatch("fixmedins_code", hospital, caller_hospital)], hospital, True)
                return Withdrawal(hospital, [(s.psn_no, s.setl_id) for s in data.stastinfo])
            sl, header = msg.input, msg  # type: ignore[assignment]
            doc = doc["input"]  # the list itself, as the native form would send it
        else:
            return Rejected([problem("infno", "NAT-INFNO", f"不支持的格式 {fmt}", f"unsupported format {fmt}")])
    except nat.ListRejected as e:
        return Rejected(e.problems)
    hospital = sl.setlinfo.fixmedins_code
    if caller_hospital is not None and hospital != caller_hospital:
        return Rejected([_mismatch("setlinfo.fixmedins_code", hospital, caller_hospital)], hospital, True)
    rules = qc.ALL_RULES if dictionaries is not None else _WITHOUT_DICTIONARIES
    window = _window(today, limits.earliest_year, limits.future_days) if today else None
    problems = qc.check(sl, dictionaries or qc.Dictionaries(frozenset(), frozenset()), kind=kind,
                        rules=rules, required=required, window=window)
    errors = qc.blocking(problems)
    discharge = sl.setlinfo.dscg_time.date() if sl.setlinfo.dscg_time else None
    declared = declared_day(sl, header)
    if errors:
        return Rejected(errors + [p for p in problems if p not in errors], hospital, False, discharge,
                        declared)
    try:
        fields = nat.case_fields(sl, header=header)
    except nat.ListRejected as e:
        return Rejected(e.problems, hospital, False, discharge, declared)
    # the list as sent (keys sorted): a resubmission in the native or the national form agrees
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    treated = (header.mdtrtarea_admvs if header else None) or hospital_region(fields.hospital_code)
    return Accepted(fields, digest, problems, treated, declared)


@functools.lru_cache(maxsize=8)
def _window(today: date, earliest_year: int, future_days: int) -> qc.DateWindow:
    return qc.DateWindow(today, earliest_year, future_days)  # the same for every list of a day


def declared_day(sl: nat.SettlementList, header: nat.HsaHeader | None = None) -> date | None:
    """The day a list was declared (uploaded), as the list itself says: its 申报时间
    (`setlinfo.dcla_time`), else the national message's `inf_time`; None when it says neither
    (then the day ingest received it counts)."""
    when = sl.setlinfo.dcla_time or (header.inf_time if header else None)
    return when.date() if when else None


def hospital_region(fixmedins_code: str) -> str | None:
    """Where a hospital is: a 定点医疗机构 code is "H" + the 6-digit area code + a serial number.

    Off-site patients (异地就医) are priced by this treatment area's policy, not their insured one.
    """
    area = fixmedins_code[1:7]
    return area if fixmedins_code[:1] == "H" and len(fixmedins_code) >= 8 and area.isdigit() else None


def _mismatch(path: str, hospital: str, caller: str) -> nat.Problem:
    return problem(path, "HOSPITAL_MISMATCH", f"清单属于医疗机构 {hospital}，与调用方 {caller} 不符",
                   f"the list belongs to hospital {hospital}, not to the caller {caller}")


def case_id_for(hospital_code: str, setl_id: str) -> str:
    """A list is identified by (hospital, settlement id); its versions share the case id."""
    return f"{hospital_code}-{setl_id}"


def person_key(psn_no: str, secret: str) -> str:
    """A keyed hash of the person number: links a person's stays without revealing who it is.

    HMAC-SHA256 (RFC 2104) of the number, from hash states that have already taken the key's
    inner and outer pads: two copies of a hash state per list (`hmac.HMAC.copy` cost more than
    the hashing)."""
    inner, outer = _keyed(secret)
    inside = inner.copy()
    inside.update(psn_no.encode())
    mac = outer.copy()
    mac.update(inside.digest())
    return mac.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> tuple[Any, Any]:
    key = secret.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return (hashlib.sha256(key.translate(_INNER_PAD)), hashlib.sha256(key.translate(_OUTER_PAD)))


_BLOCK = hashlib.sha256().block_size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))  # as hmac.py pads the key
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


def case_received(f: nat.CaseFields, *, list_version: int, psn_key: str,
                  treatment_region: str | None = None, withdrawn: bool = False) -> CaseReceived:
    return CaseReceived(
        facts=CaseFacts(
            hospital_code=f.hospital_code, setl_id=f.setl_id, list_version=list_version,
            region=f.region, psn_key=psn_key, admission_date=f.admission_date,
            discharge_date=f.discharge_date, insurance_type=f.insurance_type,
            total_cost=f.total_cost, fees=f.fees, patient_share=f.patient_share,
            treatment_region=treatment_region, planned_readmission=f.planned_readmission,
            withdrawn=withdrawn, own_pay=f.own_pay,
            principal_diagnosis=f.diagnoses[0] if f.diagnoses else None, procedures=f.procedures,
            discharge_way=f.leaving_type, icu_hours=f.icu_hours, ventilation_hours=f.ventilation_hours,
        ),
        sex=f.sex, age=f.age, age_days=f.age_days, birth_weight=f.birth_weight,
        dept=f.dept, los=f.los, leaving_type=f.leaving_type,
        diagnoses=list(f.diagnoses), procedures=list(f.procedures),
    )


# --------------------------------------------------------------------------- the stage's rules

Key = tuple[str, str]  # (hospital code, settlement id): one list, whichever its version


class WithdrawalRejected(nat.ListRejected):
    """A 4102 withdrawal names a list that was never received: nothing of it is applied."""


_V4 = 0x4 << 76 | 0b10 << 62  # the version (4) and variant (RFC 4122) bits of a random UUID
_NOT_V4 = ~(0xF << 76 | 0b11 << 62)


def new_correlation_id() -> str:
    """`str(uuid.uuid4())`, written without making a `UUID` (one for each received list)."""
    h = "%032x" % (random128() & _NOT_V4 | _V4)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Received:
    """Bytes as they arrived, with who sent them."""

    format: str
    raw: bytes
    caller_hospital: str | None = None
    correlation_id: str = field(default_factory=lambda: new_correlation_id())
    job_id: str | None = None
    job_line: int | None = None  # its line in the import job's upload


@dataclass(slots=True)
class Stored:
    """A received list as stored verbatim (status pending), before it is decided."""

    id: int
    format: str
    raw: bytes
    caller_hospital: str | None
    correlation_id: str


@dataclass(slots=True)
class Latest:
    """The newest stored version of a list."""

    hospital_code: str
    setl_id: str
    list_version: int
    status: str  # active | withdrawn
    content_sha256: str
    event: str  # the case-received payload of this version, as JSON


@dataclass(slots=True)
class Outcome:
    raw_id: int
    status: str  # accepted | duplicate | withdrawn | rejected
    case_id: str | None = None
    list_version: int | None = None
    problems: tuple[nat.Problem, ...] = ()
    forbidden: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.case_id:
            out |= {"case_id": self.case_id, "list_version": self.list_version}
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        return out

    def rejection(self) -> nat.ListRejected:
        """A rejected outcome as the API error it answers with."""
        return nat.ListRejected(list(self.problems), forbidden=self.forbidden)


@dataclass(slots=True)
class RawDecided:
    """What a received list's stored row says once the list is decided."""

    id: int
    status: str  # accepted | duplicate | rejected
    problems: Sequence[nat.Problem]
    hospital_code: str | None
    discharge_date: date | None
    case_id: str | None
    list_version: int | None
    declared_on: date | None = None


@dataclass(slots=True)
class NewVersion:
    """A version of a list to store, announced by `envelope`."""

    key: Key
    list_version: int
    raw_id: int
    status: str  # active | withdrawn
    content_sha256: str
    envelope: Envelope
    event: str  # the envelope's payload as JSON
    warnings: Sequence[nat.Problem]


@dataclass
class Changes:
    """What a batch of decided lists changes: each table gets one statement per batch.

    `latest` starts as the stored newest versions of the batch's lists and follows the batch,
    so a list sent twice in one batch is a duplicate the second time.
    """

    latest: dict[Key, Latest]
    producer: str
    raw: list[RawDecided] = field(default_factory=list)
    versions: list[NewVersion] = field(default_factory=list)

    @property
    def events(self) -> list[Envelope]:
        return [v.envelope for v in self.versions]

    def mark(self, raw_id: int, status: str, *, problems: Sequence[nat.Problem] = (),
             hospital: str | None = None, discharge: date | None = None, case_id: str | None = None,
             version: int | None = None, declared: date | None = None) -> None:
        self.raw.append(RawDecided(raw_id, status, problems, hospital, discharge, case_id, version,
                                   declared))

    def add_version(self, row: Stored, key: Key, status: str, digest: str, payload: CaseReceived,
                    warnings: Sequence[nat.Problem]) -> None:
        envelope = Envelope.new(payload, case_id=case_id_for(*key), correlation_id=row.correlation_id,
                                producer=self.producer)
        # the payload as JSON once: the same text as `payload.model_dump_json()` (tested)
        event = envelope.payload_json.decode()
        self.versions.append(NewVersion(key, payload.facts.list_version, row.id, status, digest, envelope,
                                        event, warnings))
        self.latest[key] = Latest(key[0], key[1], payload.facts.list_version, status, digest, event)


def decide(row: Stored, dictionaries: qc.Dictionaries | None, limits: lim.Limits = lim.DEFAULT,
           today: date | None = None) -> Decision:
    """A stored list's decision. An import stores each CSV row as its JSON object, so every
    format is JSON here."""
    too_large = lim.check_size(row.raw, max(limits.list_bytes, limits.line_bytes))
    if too_large:  # never stored by ingest itself; a bound lowered since, or a row written by hand
        return Rejected(too_large)
    try:
        doc = orjson.loads(row.raw)
    except orjson.JSONDecodeError as e:
        return Rejected([problem("body", "MALFORMED_JSON", f"不是合法的 JSON：{e}",
                                 f"body is not valid JSON: {e}")])
    return evaluate(row.format, doc, caller_hospital=row.caller_hospital, dictionaries=dictionaries,
                    limits=limits, today=today, raw=row.raw)


def keys_to_look_up(decisions: Iterable[Decision]) -> list[Key]:
    """The lists whose newest stored versions `record` needs for these decisions."""
    keys: list[Key] = []
    for d in decisions:
        if isinstance(d, Accepted):
            keys.append((d.fields.hospital_code, d.fields.setl_id))
        elif isinstance(d, Withdrawal):
            keys.extend((d.hospital_code, setl) for _psn, setl in d.items)
    return keys


def withdrawn_lists(decision: Withdrawal, latest: dict[Key, Latest]) -> list[tuple[Key, Latest]]:
    """The newest versions a withdrawal applies to, in its order. Raises `WithdrawalRejected`
    when it names a list never received."""
    found: list[tuple[Key, Latest]] = []
    problems: list[nat.Problem] = []
    for i, (_psn, setl_id) in enumerate(decision.items):
        key = (decision.hospital_code, setl_id)
        prev = latest.get(key)
        if prev is None:
            problems.append(problem(f"input.data.stastinfo[{i}].setl_id", "UNKNOWN_LIST",
                                    f"未找到结算清单 {setl_id}", f"no list {setl_id} to withdraw"))
        else:
            found.append((key, prev))
    if problems:
        raise WithdrawalRejected(problems)
    return found


def record(row: Stored, decision: Decision, changes: Changes, psn_key_secret: str) -> Outcome:
    """What one decided list changes (gathered in `changes`), and the answer to its sender."""
    if isinstance(decision, Rejected):
        changes.mark(row.id, "rejected", problems=decision.problems, hospital=decision.hospital_code,
                     discharge=decision.discharge_date, declared=decision.declared)
        return Outcome(row.id, "rejected", problems=tuple(decision.problems), forbidden=decision.forbidden)

    if isinstance(decision, Withdrawal):
        try:
            targets = withdrawn_lists(decision, changes.latest)
        except WithdrawalRejected as e:  # nothing of a partly unknown withdrawal is applied
            changes.mark(row.id, "rejected", problems=e.problems)
            return Outcome(row.id, "rejected", problems=tuple(e.problems))
        last_case: tuple[str | None, int | None] = (None, None)
        for key, _found in targets:
            newest = changes.latest[key]  # a list named twice is withdrawn once
            if newest.status == "withdrawn":
                last_case = (case_id_for(*key), newest.list_version)
                continue
            payload = CaseReceived.model_validate_json(newest.event)
            payload = payload.model_copy(update={"facts": payload.facts.model_copy(
                update={"list_version": newest.list_version + 1, "withdrawn": True})})
            changes.add_version(row, key, "withdrawn", newest.content_sha256, payload, [])
            last_case = (case_id_for(*key), newest.list_version + 1)
        changes.mark(row.id, "accepted", hospital=decision.hospital_code, case_id=last_case[0],
                     version=last_case[1])
        return Outcome(row.id, "withdrawn", last_case[0], last_case[1])

    f = decision.fields
    key = (f.hospital_code, f.setl_id)
    case_id = case_id_for(*key)
    prev = changes.latest.get(key)
    if prev is not None and prev.content_sha256 == decision.content_sha256 and prev.status == "active":
        # an identical resubmission: the same case, no new version, no new event
        changes.mark(row.id, "duplicate", hospital=f.hospital_code, discharge=f.discharge_date,
                     case_id=case_id, version=prev.list_version, declared=decision.declared)
        return Outcome(row.id, "duplicate", case_id, prev.list_version, tuple(decision.warnings))
    version = (prev.list_version + 1) if prev is not None else 1
    payload = case_received(f, list_version=version, psn_key=person_key(f.psn_no, psn_key_secret),
                            treatment_region=decision.treatment_region)
    changes.add_version(row, key, "active", decision.content_sha256, payload, decision.warnings)
    changes.mark(row.id, "accepted", problems=decision.warnings, hospital=f.hospital_code,
                 discharge=f.discharge_date, case_id=case_id, version=version, declared=decision.declared)
    return Outcome(row.id, "accepted", case_id, version, tuple(decision.warnings))
