"""The feedback channel (意见收集, docs/domain.md §14): opinions of hospitals and their doctors on
grouping and the rules, which the bureau triages, answers and closes. Pure.

An opinion has a category from a fixed list, a text, optionally an author (a doctor or a
department: doctors send through their hospital's token) and the hospital's own cases it is
about. Its status moves new → triaged → answered → closed, one step at a time; answering needs an
answer text. The answer time is counted in working days (Monday to Friday less the holidays,
plus the weekend days worked, of the review calendar `FLAG_WORKFLOW`) from the day it was sent to
the day it was answered, China Standard Time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any, Literal

from services.review.domain.parameters import FlagWorkflow
from services.review.domain.workflow import is_working_day
from shared.errors import Conflict, Invalid, NotFound
from shared.periods import cst_day

Category = Literal["grouping", "weights", "payment", "rules", "monitoring", "special-cases", "data", "other"]
CATEGORIES: tuple[str, ...] = ("grouping", "weights", "payment", "rules", "monitoring", "special-cases", "data",
                               "other")
NEW, TRIAGED, ANSWERED, CLOSED = "new", "triaged", "answered", "closed"
STATUSES: tuple[str, ...] = (NEW, TRIAGED, ANSWERED, CLOSED)
# step → (the status it starts from, the status it leads to)
STEPS: dict[str, tuple[str, str]] = {"triage": (NEW, TRIAGED), "answer": (TRIAGED, ANSWERED),
                                     "close": (ANSWERED, CLOSED)}
MAX_CASES = 100


def next_status(current: str, step: str, answer: str | None) -> str:
    """The status after `step` (409 `FEEDBACK_STEP_NOT_ALLOWED` out of order; 422 for an answer
    without a text)."""
    start, end = STEPS[step]
    if current != start:
        raise Conflict(f"an opinion is {step}d from {start!r}; this one is {current!r}",
                       code="FEEDBACK_STEP_NOT_ALLOWED", field="status")
    if step == "answer" and not (answer or "").strip():
        raise Invalid("the answer is required", code="ANSWER_REQUIRED", field="answer")
    return end


def check_cases(case_ids: Iterable[str], owners: Mapping[str, str], hospital: str) -> None:
    """Every case named is one of the hospital's own (404 `CASE_NOT_FOUND` otherwise: another
    hospital's case is reported as missing, its existence is not shared)."""
    for i, case_id in enumerate(case_ids):
        if owners.get(case_id) != hospital:
            raise NotFound(f"no case {case_id!r} of hospital {hospital}", code="CASE_NOT_FOUND",
                           field=f"case_ids[{i}]")


def working_days(start: date, end: date, wf: FlagWorkflow) -> int:
    """Working days after `start` up to and including `end` (0 when answered the same day)."""
    n, day = 0, start
    while day < end:
        day += timedelta(days=1)
        n += is_working_day(day, wf)
    return n


def answer_days(sent_at: datetime, answered_at: datetime | None, wf: FlagWorkflow) -> int | None:
    return None if answered_at is None else working_days(cst_day(sent_at), cst_day(answered_at), wf)


def stats(rows: Iterable[Mapping[str, Any]], wf: FlagWorkflow) -> dict[str, Any]:
    """Counts by status and category, and the answer times in working days (mean, median, max)
    of the answered ones (`rows`: status, category, sent_at, answered_at)."""
    by_status = dict.fromkeys(STATUSES, 0)
    by_category: dict[str, int] = {}
    days: list[int] = []
    total = 0
    for r in rows:
        total += 1
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        by_category[r["category"]] = by_category.get(r["category"], 0) + 1
        d = answer_days(r["sent_at"], r["answered_at"], wf)
        if d is not None:
            days.append(d)
    mean = None if not days else str((Decimal(sum(days)) / len(days)).quantize(Decimal("0.1")))
    return {"total": total, "by_status": by_status, "by_category": dict(sorted(by_category.items())),
            "answered": len(days), "answer_working_days": {
                "mean": mean, "median": None if not days else str(median(days)), "max": max(days, default=None)}}
