"""The read model's pure rules: which stage a case has reached, and which events are stale."""

from __future__ import annotations

from services.gateway.domain.readmodel import apply
from shared.events import CASE_FLAGGED, CASE_GROUPED, CASE_PRICED, CASE_RECEIVED


def test_a_case_moves_through_the_stages_in_any_arrival_order() -> None:
    view = apply(None, CASE_GROUPED, 1, "g")
    assert view is not None and view["status"] == "grouped" and view["received"] is None
    for event, result in ((CASE_FLAGGED, "f"), (CASE_RECEIVED, "r"), (CASE_PRICED, "p")):
        view = apply(view, event, 1, result)
        assert view is not None
    assert view["status"] == "reviewed"
    assert [view[s] for s in ("received", "grouped", "priced", "reviewed")] == ["r", "g", "p", "f"]


def test_a_newer_list_version_starts_the_view_again_and_older_events_are_ignored() -> None:
    view = apply(apply(None, CASE_RECEIVED, 1, "r1"), CASE_PRICED, 1, "p1")
    newer = apply(view, CASE_RECEIVED, 2, "r2")
    assert newer == {"list_version": 2, "withdrawn": False, "received": "r2", "grouped": None,
                     "priced": None, "reviewed": None, "status": "received"}
    assert apply(newer, CASE_FLAGGED, 1, "late f1") is None


def test_a_withdrawal_version_marks_the_case_withdrawn_whatever_follows() -> None:
    view = apply(apply(None, CASE_RECEIVED, 1, "r1"), CASE_RECEIVED, 2, "r2", withdrawn=True)
    assert view is not None and view["status"] == "withdrawn"
    view = apply(view, CASE_FLAGGED, 2, "f2", withdrawn=True)
    assert view is not None and view["status"] == "withdrawn" and view["reviewed"] == "f2"
    again = apply(view, CASE_RECEIVED, 3, "r3")
    assert again is not None and again["status"] == "received"
