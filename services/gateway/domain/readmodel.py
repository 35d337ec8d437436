"""The gateway's read model: one row per case with each stage's latest result, plus a timeline.

Pure: decides how an event changes a case's view; the repository stores the outcome. A view
holds each stage's result as the service gives it (stored JSON text passed through untouched),
the list version it belongs to, and whether that version withdraws the list.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from shared.events import CASE_FLAGGED, CASE_GROUPED, CASE_PRICED, CASE_RECEIVED, Envelope

STAGE_COLUMN = {CASE_RECEIVED: "received", CASE_GROUPED: "grouped", CASE_PRICED: "priced",
                CASE_FLAGGED: "reviewed"}
ORDER = ("received", "grouped", "priced", "reviewed")
_FURTHEST_FIRST = ORDER[::-1]


class CaseRef(NamedTuple):
    """The case facts the read model files an event by (the rest of the payload is kept as is)."""

    hospital_code: str
    list_version: int = 1
    withdrawn: bool = False


class _CaseRefFields(BaseModel):
    """CaseRef's validation: what the facts of an event must hold."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    hospital_code: str
    list_version: int = 1
    withdrawn: bool = False


def case_ref(env: Envelope) -> CaseRef:
    """The facts an event is filed by; a malformed event raises (the consumer dead-letters it).

    Facts whose fields have exactly the types the model keeps as they are (a str, an int, a
    bool: nearly always) are taken without the model, which would accept and keep them the
    same; anything else goes through its validation."""
    facts = env.payload.get("facts")
    if type(facts) is dict:
        hospital, version, withdrawn = (facts.get("hospital_code"), facts.get("list_version", 1),
                                        facts.get("withdrawn", False))
        if type(hospital) is str and type(version) is int and type(withdrawn) is bool:
            return CaseRef(hospital, version, withdrawn)
    checked = _CaseRefFields.model_validate(facts)
    return CaseRef(checked.hospital_code, checked.list_version, checked.withdrawn)


def status_of(view: dict[str, Any]) -> str:
    """The furthest stage the case's current list version has reached, or "withdrawn"."""
    if view.get("withdrawn"):
        return "withdrawn"
    reached = [s for s in ORDER if view.get(s) is not None]
    return reached[-1] if reached else "unknown"


def status_reached(withdrawn: bool, reached: Collection[str]) -> str:
    """The furthest of the stage columns holding a result, or "withdrawn"."""
    if withdrawn:
        return "withdrawn"
    for s in _FURTHEST_FIRST:
        if s in reached:
            return s
    return "unknown"


def apply(view: dict[str, Any] | None, event_type: str, list_version: int, result: Any,
          withdrawn: bool = False) -> dict[str, Any] | None:
    """The case view after an event; None when the event belongs to an older list version.

    `withdrawn` says the event's list version is a withdrawal (interface 4102); the
    `case-received` of that version is what marks the case withdrawn."""
    column = STAGE_COLUMN[event_type]
    if view is None or list_version > view["list_version"]:
        view = {"list_version": list_version, "withdrawn": False, **{s: None for s in ORDER}}
    elif list_version < view["list_version"]:
        return None
    view = {**view, column: result}
    if column == "received":
        view["withdrawn"] = withdrawn
    view["status"] = status_of(view)
    return view


def group_of(grouped: Mapping[str, Any] | None) -> str | None:
    """The group a case's grouping result put it into: its DRG, else its DIP group (what the
    dashboard drills down by)."""
    if not grouped:
        return None
    code = grouped.get("drg") or (grouped.get("dip") or {}).get("group")
    return str(code)[:32] if code else None


def is_flagged(reviewed: Mapping[str, Any] | None) -> bool:
    """Review raised at least one flag (from its result)."""
    return bool(reviewed and reviewed.get("flags"))


def stage_result(env: Envelope, facts: CaseRef) -> dict[str, Any]:
    """What the read model keeps of an event: its payload without the carried facts, and the
    event's id and time (a UTC time kept as the datetime: written as JSON, it is the text
    isoformat() gives)."""
    result = dict(env.payload)
    result.pop("facts", None)
    if facts.withdrawn:
        result["withdrawn"] = True
    result["event_id"] = env.event_id
    at = env.occurred_at  # a UTC time as itself: orjson writes it as isoformat() does, without the call
    result["occurred_at"] = at if at.tzinfo is UTC else at.isoformat()
    return result


class Stored(NamedTuple):
    """What the fold reads of a stored case: its list version, whether that version withdraws the
    list, which stage columns hold a result, its indicator contribution (JSON) and whether the
    facts of its list version are kept with it. The stage results themselves are read only when
    a new contribution needs them."""

    list_version: int
    withdrawn: bool
    reached: frozenset[str]
    indicator: str | None = None
    facts_kept: bool = False

    @property
    def status(self) -> str:
        return status_reached(self.withdrawn, self.reached)


@dataclass
class Filed:
    """A case after a batch: the stage results the batch set (the latest per column), whether the
    stored results are cleared (a newer list version, or a new case), the stage columns holding a
    result, the facts its current version carries and the hospital of the event that last
    changed it."""

    hospital_code: str
    list_version: int
    withdrawn: bool
    reset: bool
    reached: set[str]
    facts: Mapping[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return status_reached(self.withdrawn, self.reached)


def file_events(stored: Mapping[str, Stored], envs: Sequence[Envelope],
                refs: Sequence[CaseRef]) -> dict[str, Filed]:
    """The cases a batch of events changes (by case id), the events applied in order over the
    stored cases (as `apply` does to whole views); an event of an older list version changes
    nothing."""
    filed: dict[str, Filed] = {}
    for env, ref in zip(envs, refs, strict=True):
        cid = env.case_id
        f = filed.get(cid)
        if f is None:
            s = stored.get(cid)
            if s is not None and ref.list_version < s.list_version:
                continue
            f = (Filed(ref.hospital_code, ref.list_version, False, True, set()) if s is None
                 or ref.list_version > s.list_version
                 else Filed(ref.hospital_code, s.list_version, s.withdrawn, False, set(s.reached)))
        elif ref.list_version < f.list_version:
            continue
        elif ref.list_version > f.list_version:
            f = Filed(ref.hospital_code, ref.list_version, False, True, set())
        column = STAGE_COLUMN[env.event_type]
        f.results[column] = stage_result(env, ref)
        f.reached.add(column)
        if column == "received":
            f.withdrawn = ref.withdrawn
        f.hospital_code = ref.hospital_code
        f.facts = env.payload.get("facts") or {}
        filed[cid] = f
    return filed
