"""The gateway's read model: one row per case with each stage's latest result, plus a timeline.

Pure: decides how an event changes a case's view; the repository stores the outcome. A view
holds each stage's result as the service gives it (stored JSON text passed through untouched),
the list version it belongs to, and whether that version withdraws the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from shared.events import CASE_FLAGGED, CASE_GROUPED, CASE_PRICED, CASE_RECEIVED, Envelope

STAGE_COLUMN = {CASE_RECEIVED: "received", CASE_GROUPED: "grouped", CASE_PRICED: "priced",
                CASE_FLAGGED: "reviewed"}
ORDER = ("received", "grouped", "priced", "reviewed")


class CaseRef(BaseModel):
    """The case facts the read model files an event by (the rest of the payload is kept as is)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    hospital_code: str
    list_version: int = 1
    withdrawn: bool = False


def case_ref(env: Envelope) -> CaseRef:
    """The facts an event is filed by; a malformed event raises (the consumer dead-letters it)."""
    return CaseRef.model_validate(env.payload.get("facts"))


def status_of(view: dict[str, Any]) -> str:
    """The furthest stage the case's current list version has reached, or "withdrawn"."""
    if view.get("withdrawn"):
        return "withdrawn"
    reached = [s for s in ORDER if view.get(s) is not None]
    return reached[-1] if reached else "unknown"


def is_flagged(view: dict[str, Any]) -> bool:
    """Review raised at least one flag on the case's current list version."""
    reviewed = view.get("reviewed")
    if not reviewed:
        return False
    return bool(orjson.loads(reviewed).get("flags"))


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


def group_of(view: dict[str, Any]) -> str | None:
    """The group the case's current list version was grouped into: its DRG, else its DIP group
    (what the dashboard drills down by)."""
    grouped = view.get("grouped")
    if not grouped:
        return None
    g = orjson.loads(grouped)
    code = g.get("drg") or (g.get("dip") or {}).get("group")
    return str(code)[:32] if code else None


def stage_result(env: Envelope, facts: CaseRef) -> str:
    """What the read model keeps of an event (JSON): its payload without the carried facts."""
    result = {k: v for k, v in env.payload.items() if k != "facts"}
    if facts.withdrawn:
        result["withdrawn"] = True
    result["event_id"] = env.event_id
    result["occurred_at"] = env.occurred_at.isoformat()
    return orjson.dumps(result).decode()


@dataclass(frozen=True)
class Filed:
    """A case's view after a batch, with the hospital of the event that last changed it."""

    view: dict[str, Any]
    hospital_code: str


def file_events(stored: Mapping[str, dict[str, Any]], envs: Sequence[Envelope],
                refs: Sequence[CaseRef]) -> dict[str, Filed]:
    """The cases a batch of events changes (by case id), the events applied in order over the
    stored views; an event of an older list version changes nothing."""
    views = dict(stored)
    filed: dict[str, Filed] = {}
    for env, ref in zip(envs, refs, strict=True):
        view = apply(views.get(env.case_id), env.event_type, ref.list_version,
                     stage_result(env, ref), ref.withdrawn)
        if view is not None:
            views[env.case_id] = view
            filed[env.case_id] = Filed(view, ref.hospital_code)
    return filed
