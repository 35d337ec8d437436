"""The draft check (`POST /group`): a case grouped before it is submitted, nothing stored.

It gives what the live stage would: the DRG of the scheme asked for (or in force for the
region and discharge date), its trace and explanation, and where a DIP catalogue is in force
the case's DIP group (§5).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.dip import Catalogue, DipCase, assign
from shared.errors import Invalid, NotFound

from .book import SchemeBook
from .scheme import Scheme


class DraftCase(BaseModel):
    """A case to check before it is submitted (the testdata case format)."""

    model_config = ConfigDict(extra="ignore")
    sex: Any = None
    age: Any = None
    age_days: Any = None
    birth_weight: Any = None
    diagnoses: list[str] = Field(default_factory=list)
    procedures: list[str] = Field(default_factory=list)
    region: str = "default"
    discharge_date: date | None = None
    scheme: str | None = Field(None, description="scheme id; default: the one in force")
    code_mode: Literal["raw", "mapped"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_settlement_list(cls, data: Any) -> Any:
        # a whole settlement list has no case fields at its top level: grouping it would only
        # say "sex missing"; tell the caller what this route takes instead
        if isinstance(data, dict) and ("setlinfo" in data or "input" in data):
            raise ValueError("this is a settlement list, not a case: submit it to "
                             "/api/v1/settlement-lists (or /api/v1/hsa/4101), or send the case "
                             "fields sex, age, diagnoses, procedures")
        return data


def draft_scheme(book: SchemeBook, draft: DraftCase) -> Scheme:
    """The scheme asked for, else the one in force for the draft's region and discharge date."""
    if draft.scheme is not None:
        scheme = book.schemes.get(draft.scheme)
        if scheme is None:
            raise NotFound(f"no scheme {draft.scheme!r} is loaded", code="UNKNOWN_SCHEME", field="scheme")
        return scheme
    found = book.scheme_for(draft.region, draft.discharge_date)
    if found is None:
        raise Invalid(f"no scheme in force for region {draft.region} on {draft.discharge_date}",
                      code="NO_SCHEME_IN_FORCE", field="discharge_date")
    return found


def check_draft(book: SchemeBook, draft: DraftCase, catalogue: Catalogue | None, *,
                code_mode: str, trace: bool) -> dict[str, Any]:
    """The draft's grouping (with its trace when asked) and, with `catalogue` (the one in force
    for the draft's region and discharge date), its DIP group as the live stage assigns it."""
    scheme = draft_scheme(book, draft)
    r = scheme.group(draft.model_dump(), code_mode=draft.code_mode or code_mode, trace=trace)
    out = {"scheme_id": scheme.id, **r.to_dict(), "drg_name": r.drg_name}
    if trace and r.trace is not None:
        out["trace"] = r.trace.to_dict()
        out["explanation"] = r.trace.render()
    day = draft.discharge_date
    if catalogue is not None and day is not None:
        a = assign(catalogue, DipCase(
            case_id="draft", year=day.year, discharge_date=day, region=draft.region,
            principal_diagnosis=draft.diagnoses[0] if draft.diagnoses else "",
            secondary_diagnoses=tuple(draft.diagnoses[1:]), procedures=tuple(draft.procedures),
            total_cost="0"))
        out["dip"] = {"catalogue_id": catalogue.catalogue_id, "catalogue_version": catalogue.version,
                      "group": a.code, "kind": a.kind, "treatment_type": a.treatment_type.value,
                      "trace": list(a.trace)}
    return out
