"""Ingest's domain core: the settlement list as hospitals submit it, checked for structure.

Pure: pydantic models and functions, no web, bus or database imports. The national 4101/4101A
message formats map onto `SettlementList` as well (see the intake documentation).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events import CaseFacts, CaseReceived

CODE = r"^\S(.*\S)?$"  # a code: non-empty, no surrounding whitespace


class SettlementList(BaseModel):
    """One inpatient settlement list (医保结算清单), the fields the pipeline needs.

    Unknown fields are allowed and kept: the raw list is stored verbatim anyway.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    hospital_code: str = Field(min_length=1, max_length=32, description="fixmedins_code")
    setl_id: str = Field(min_length=1, max_length=64, description="settlement id")
    psn_no: str = Field(min_length=1, max_length=64, description="person number (never logged)")
    region: str = Field("default", min_length=1, max_length=32, description="insured area code")
    sex: int = Field(description="1 male, 2 female (gend)")
    age: int | None = Field(None, ge=0, le=150)
    age_days: int | None = Field(None, ge=0, le=366 * 150)
    birth_weight: int | None = Field(None, ge=0, le=10_000, description="grams")
    dept: str | None = Field(None, max_length=32)
    los: int | None = Field(None, ge=0, le=3650)
    leaving_type: int | None = Field(None, ge=1, le=9)
    admission_date: date
    discharge_date: date
    diagnoses: list[str] = Field(min_length=1, max_length=100, description="principal first")
    procedures: list[str] = Field(default_factory=list, max_length=100, description="main first")
    total_cost: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)
    insurance_type: str | None = Field(None, max_length=16)

    @field_validator("sex")
    @classmethod
    def _sex(cls, v: int) -> int:
        if v not in (1, 2, 0, 9):  # GB/T 2261.1: 0 unknown, 9 unspecified are valid values
            raise ValueError("must be 1 (male), 2 (female), 0 or 9")
        return v

    @field_validator("diagnoses", "procedures")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        for i, code in enumerate(v):
            if not code or code != code.strip() or len(code) > 64:
                raise ValueError(f"code at position {i} is empty, padded with spaces or too long")
        return v

    @model_validator(mode="after")
    def _dates(self) -> SettlementList:
        if self.discharge_date < self.admission_date:
            raise ValueError("discharge_date is before admission_date")
        return self


def case_id_for(hospital_code: str, setl_id: str) -> str:
    """A list is identified by (hospital, settlement id); its versions share the case id."""
    return f"{hospital_code}-{setl_id}"


def person_key(psn_no: str, secret: str) -> str:
    """A keyed hash of the person number: links a person's stays without revealing who it is."""
    return hmac.new(secret.encode(), psn_no.encode(), hashlib.sha256).hexdigest()[:32]


def case_received(sl: SettlementList, *, list_version: int, psn_key: str) -> CaseReceived:
    return CaseReceived(
        facts=CaseFacts(
            hospital_code=sl.hospital_code, setl_id=sl.setl_id, list_version=list_version,
            region=sl.region, psn_key=psn_key, admission_date=sl.admission_date,
            discharge_date=sl.discharge_date, insurance_type=sl.insurance_type,
            total_cost=sl.total_cost,
        ),
        sex=sl.sex, age=sl.age, age_days=sl.age_days, birth_weight=sl.birth_weight,
        dept=sl.dept, los=sl.los, leaving_type=sl.leaving_type,
        diagnoses=sl.diagnoses, procedures=sl.procedures,
    )
