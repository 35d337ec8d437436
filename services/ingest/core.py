"""Ingest's domain core: from received bytes to a decision (accepted, rejected, withdrawal).

Pure: parsing (services.ingest.national), quality control (services.ingest.qc) and the mapping
onto the pipeline's `case-received` event. No web, bus or database imports.

Formats a list arrives in:

- `native`: the 4101 `input` node as JSON (setlinfo + diseinfo[] + oprninfo[] + iteminfo[] …),
  national field names (POST /api/v1/settlement-lists, JSON Lines imports);
- `4101`, `4101A`, `4102`: the national message envelope (POST /api/v1/hsa/{infno});
- `flat`: one CSV row of the documented flat layout (`services.ingest.csvformat`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import orjson

from services.ingest import national as nat
from services.ingest import qc
from shared.events import CaseFacts, CaseReceived

Format = Literal["native", "4101", "4101A", "4102", "flat"]
FORMATS: tuple[str, ...] = ("native", "4101", "4101A", "4102", "flat")
_WITHOUT_DICTIONARIES = tuple(r for r in qc.ALL_RULES
                              if r not in (qc.diagnoses_in_dictionary, qc.procedures_in_dictionary))
# History in the flat CSV layout carries only what grouping and pricing need.
FLAT_REQUIRED = {"4101A": ("setl_id", "psn_no", "fixmedins_code", "gend", "adm_time", "dscg_time")}


@dataclass(frozen=True)
class Accepted:
    fields: nat.CaseFields
    content_sha256: str  # of the list node as sent: the native and national forms of a list agree
    warnings: list[nat.Problem]
    treatment_region: str | None


@dataclass(frozen=True)
class Rejected:
    problems: list[nat.Problem]
    hospital_code: str | None = None
    forbidden: bool = False  # the caller may not submit for this hospital
    discharge_date: date | None = None  # when readable: rejected lists count in quality scores


@dataclass(frozen=True)
class Withdrawal:
    hospital_code: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (psn_no, setl_id)


Decision = Accepted | Rejected | Withdrawal


def problem(path: str, code: str, zh: str, en: str) -> nat.Problem:
    return nat.Problem(path, code, zh, en, "error")


def evaluate(fmt: str, doc: Any, *, caller_hospital: str | None,
             dictionaries: qc.Dictionaries | None) -> Decision:
    """Parse, check the caller and run QC. `doc` is decoded JSON (or a flat CSV row dict)."""
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
    problems = qc.check(sl, dictionaries or qc.Dictionaries(frozenset(), frozenset()), kind=kind,
                        rules=rules, required=required)
    errors = qc.blocking(problems)
    discharge = sl.setlinfo.dscg_time.date() if sl.setlinfo.dscg_time else None
    if errors:
        return Rejected(errors + [p for p in problems if p not in errors], hospital, False, discharge)
    try:
        fields = nat.case_fields(sl, header=header)
    except nat.ListRejected as e:
        return Rejected(e.problems, hospital, False, discharge)
    # the list as sent (keys sorted): a resubmission in the native or the national form agrees
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    treated = (header.mdtrtarea_admvs if header else None) or hospital_region(fields.hospital_code)
    return Accepted(fields, digest, problems, treated)


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
    """A keyed hash of the person number: links a person's stays without revealing who it is."""
    mac = _keyed(secret).copy()  # copying the keyed state skips deriving the key pads per list
    mac.update(psn_no.encode())
    return mac.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def case_received(f: nat.CaseFields, *, list_version: int, psn_key: str,
                  treatment_region: str | None = None, withdrawn: bool = False) -> CaseReceived:
    return CaseReceived(
        facts=CaseFacts(
            hospital_code=f.hospital_code, setl_id=f.setl_id, list_version=list_version,
            region=f.region, psn_key=psn_key, admission_date=f.admission_date,
            discharge_date=f.discharge_date, insurance_type=f.insurance_type,
            total_cost=f.total_cost, fees=f.fees, patient_share=f.patient_share,
            treatment_region=treatment_region, planned_readmission=f.planned_readmission,
            withdrawn=withdrawn,
        ),
        sex=f.sex, age=f.age, age_days=f.age_days, birth_weight=f.birth_weight,
        dept=f.dept, los=f.los, leaving_type=f.leaving_type,
        diagnoses=list(f.diagnoses), procedures=list(f.procedures),
    )
