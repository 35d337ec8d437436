"""The feedback channel's pure domain (docs/domain.md §14): steps, own cases, working days, counts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.review.domain import feedback as fb
from services.review.domain.parameters import FlagWorkflow
from shared.errors import Conflict, Invalid, NotFound


def test_an_opinion_moves_one_step_at_a_time() -> None:
    assert fb.next_status("new", "triage", None) == "triaged"
    assert fb.next_status("triaged", "answer", "an answer") == "answered"
    assert fb.next_status("answered", "close", None) == "closed"
    for status, step in (("new", "answer"), ("triaged", "close"), ("closed", "triage"), ("answered", "triage")):
        with pytest.raises(Conflict) as e:
            fb.next_status(status, step, "x")
        assert e.value.code == "FEEDBACK_STEP_NOT_ALLOWED"
    with pytest.raises(Invalid) as e2:
        fb.next_status("triaged", "answer", "  ")
    assert e2.value.code == "ANSWER_REQUIRED"


def test_only_the_hospitals_own_cases_may_be_named() -> None:
    fb.check_cases(["c1"], {"c1": "H1"}, "H1")
    for owners in ({"c1": "H2"}, {}):
        with pytest.raises(NotFound) as e:
            fb.check_cases(["c1"], owners, "H1")
        assert (e.value.code, e.value.field) == ("CASE_NOT_FOUND", "case_ids[0]")


def test_answer_times_count_working_days_of_the_review_calendar() -> None:
    calendar = FlagWorkflow(holidays=(date(2024, 10, 1),), workdays=(date(2024, 10, 12),))
    # Friday 27 Sep to Tuesday 1 Oct (a holiday): Monday only
    assert fb.working_days(date(2024, 9, 27), date(2024, 10, 1), calendar) == 1
    # a worked Saturday counts
    assert fb.working_days(date(2024, 10, 11), date(2024, 10, 12), calendar) == 1
    assert fb.working_days(date(2024, 10, 11), date(2024, 10, 11), calendar) == 0
    # sent late on Friday in China (UTC Friday 17:00 = Saturday 01:00 CST), answered on Monday
    assert fb.answer_days(datetime(2024, 10, 18, 17, tzinfo=UTC), datetime(2024, 10, 21, 2, tzinfo=UTC),
                          FlagWorkflow()) == 1


def test_stats_count_by_status_and_category_with_answer_times() -> None:
    sent = datetime(2024, 10, 14, 2, tzinfo=UTC)  # a Monday
    rows = [{"status": "closed", "category": "grouping", "sent_at": sent, "answered_at": datetime(2024, 10, 16, 2, tzinfo=UTC)},
            {"status": "answered", "category": "rules", "sent_at": sent, "answered_at": datetime(2024, 10, 21, 2, tzinfo=UTC)},
            {"status": "new", "category": "grouping", "sent_at": sent, "answered_at": None}]
    s = fb.stats(rows, FlagWorkflow())
    assert s["total"] == 3 and s["by_status"] == {"new": 1, "triaged": 0, "answered": 1, "closed": 1}
    assert s["by_category"] == {"grouping": 2, "rules": 1}
    assert s["answered"] == 2 and s["answer_working_days"] == {"mean": "3.5", "median": "3.5", "max": 5}
