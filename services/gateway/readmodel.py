"""The gateway's read model: one row per case with each stage's latest result, plus a timeline.

Pure: decides how an event changes a case's view; the service stores the outcome. A view holds
each stage's result as the service gives it (the service passes stored JSON text through
untouched), the list version it belongs to, and whether that version withdraws the list.
"""

from __future__ import annotations

from typing import Any

from shared.events import CASE_FLAGGED, CASE_GROUPED, CASE_PRICED, CASE_RECEIVED

STAGE_COLUMN = {CASE_RECEIVED: "received", CASE_GROUPED: "grouped", CASE_PRICED: "priced",
                CASE_FLAGGED: "reviewed"}
ORDER = ("received", "grouped", "priced", "reviewed")


def status_of(view: dict[str, Any]) -> str:
    """The furthest stage the case's current list version has reached, or "withdrawn"."""
    if view.get("withdrawn"):
        return "withdrawn"
    reached = [s for s in ORDER if view.get(s) is not None]
    return reached[-1] if reached else "unknown"


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
