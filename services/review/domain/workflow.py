"""A monitoring flag's workflow (docs/domain.md §11): what a hospital and a bureau reviewer may do
with a flag, and when.

    open ──(hospital answers 申诉, by the deadline)──> answered ──(bureau decides)──> confirmed | dismissed
    open ──(bureau decides: dismissed any time, confirmed once the deadline has passed)──> …
    open | answered ──(a new review of the case or a new run of the period)──> superseded

- The hospital answers its own open flag until its deadline: `answer_working_days` (default 10)
  working days after the day the flag was raised, in China Standard Time (§13). Working days are
  Monday to Friday, less the `holidays` of the calendar parameter, plus its `workdays` (weekend
  days worked instead, 调休).
- The bureau decides with a reason: confirmed (optionally with a deduction, yuan to the fen,
  which the hospital's next settlement applies) or dismissed. It confirms an open flag only once
  the hospital's time to answer has passed (a flag may be dismissed at once). A decision is final.
- Every answer and decision is an audit record: who, when, the state before and after, why.

Pure: the repository loads a flag's state, these functions check the step and give the new
state (or raise a 409/422 with a stable code), the repository stores it with its audit record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from services.review.domain.hospital_rules import HospitalFlag
from services.review.domain.parameters import FlagWorkflow
from shared import periods
from shared.errors import Conflict, Invalid
from shared.money import FEN
from shared.periods import cst_day

OPEN, ANSWERED, CONFIRMED, DISMISSED, SUPERSEDED = "open", "answered", "confirmed", "dismissed", "superseded"
STATUSES = (OPEN, ANSWERED, CONFIRMED, DISMISSED, SUPERSEDED)
LIVE = (OPEN, ANSWERED)  # what a new review or run may supersede
OUTCOMES = (CONFIRMED, DISMISSED)
MAX_TEXT = 4000
MAX_DEDUCTION = Decimal("1000000000")



def is_working_day(day: date, wf: FlagWorkflow) -> bool:
    return periods.is_working_day(day, wf.holidays, wf.workdays)


def add_working_days(day: date, n: int, wf: FlagWorkflow) -> date:
    """The `n`-th working day after `day` (`day` itself when n is 0), by the workflow's calendar."""
    return periods.add_working_days(day, n, wf.holidays, wf.workdays)


def answer_deadline(raised_at: datetime, wf: FlagWorkflow) -> date:
    """The last day (CST) the hospital may answer a flag raised at `raised_at`."""
    return add_working_days(cst_day(raised_at), wf.answer_working_days, wf)


@dataclass(frozen=True)
class FlagState:
    """A flag as the workflow sees it."""

    flag_id: int
    hospital_code: str
    status: str
    deadline: date
    answer: str | None = None
    answered_at: datetime | None = None
    answered_by: str | None = None
    decision_reason: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    deduction: Decimal | None = None

    def public(self) -> dict[str, Any]:
        """The state as an audit record holds it (JSON-ready)."""
        return {"status": self.status, "deadline": self.deadline.isoformat(), "answer": self.answer,
                "answered_by": self.answered_by,
                "answered_at": self.answered_at.isoformat() if self.answered_at else None,
                "decision_reason": self.decision_reason, "decided_by": self.decided_by,
                "decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "deduction": None if self.deduction is None else str(self.deduction)}


def _text(value: str | None, field: str) -> str:
    text = (value or "").strip()
    if not text:
        raise Invalid(f"{field} is required", code="REQUIRED", field=field)
    if len(text) > MAX_TEXT:
        raise Invalid(f"{field} is longer than {MAX_TEXT} characters", code="TOO_LONG", field=field)
    if "\x00" in text:  # no database stores it in a text column
        raise Invalid(f"{field} holds a NUL character", code="INVALID_TEXT", field=field)
    return text


def _closed(state: FlagState) -> None:
    if state.status == SUPERSEDED:
        raise Conflict(f"flag {state.flag_id} was superseded by a newer review", code="FLAG_SUPERSEDED",
                       field="flag_id")
    if state.status in OUTCOMES:
        raise Conflict(f"flag {state.flag_id} is {state.status} already: a decision is final",
                       code="FLAG_DECIDED", field="flag_id")


def answer(state: FlagState, text: str | None, who: str, at: datetime) -> FlagState:
    """The hospital's answer (申诉) to its open flag, on or before the deadline."""
    _closed(state)
    if state.status == ANSWERED:
        raise Conflict(f"flag {state.flag_id} is answered already", code="FLAG_ANSWERED", field="flag_id")
    if cst_day(at) > state.deadline:
        raise Conflict(f"the time to answer flag {state.flag_id} ended on {state.deadline}",
                       code="ANSWER_DEADLINE_PASSED", field="flag_id")
    return replace(state, status=ANSWERED, answer=_text(text, "answer"), answered_at=at, answered_by=who)


def deduction_of(value: Any) -> Decimal | None:
    """A deduction as sent: a decimal string (or number) of yuan to the fen, ≥ 0; None: none."""
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise Invalid(f"deduction {value!r} is not an amount", code="INVALID_AMOUNT", field="deduction") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(FEN) or amount > MAX_DEDUCTION:
        raise Invalid("deduction: an amount in yuan ≥ 0 with at most 2 decimals",
                      code="INVALID_AMOUNT", field="deduction")
    return amount.quantize(FEN)


def decide(state: FlagState, outcome: str, reason: str | None, deduction: Decimal | None, who: str,
           at: datetime) -> FlagState:
    """A bureau reviewer's decision on a flag."""
    if outcome not in OUTCOMES:
        raise Invalid(f"outcome must be one of {', '.join(OUTCOMES)}", code="INVALID_OUTCOME", field="outcome")
    if deduction is not None and outcome != CONFIRMED:
        raise Invalid("only a confirmed flag carries a deduction", code="DEDUCTION_NOT_ALLOWED",
                      field="deduction")
    why = _text(reason, "reason")
    _closed(state)
    if outcome == CONFIRMED and state.status == OPEN and cst_day(at) <= state.deadline:
        raise Conflict(f"hospital {state.hospital_code} may answer until {state.deadline}: confirm after "
                       "its answer or once that day has passed", code="ANSWER_PENDING", field="flag_id")
    return replace(state, status=outcome, decision_reason=why, decided_at=at, decided_by=who,
                   deduction=deduction if deduction else None)


@dataclass(frozen=True)
class Stored:
    """A live or decided hospital-level flag of the same period and rules, as stored."""

    flag_id: int
    hospital_code: str
    rule: str
    status: str
    evidence: dict


def reconcile(stored: list[Stored], raised: list[HospitalFlag]) -> tuple[list[HospitalFlag], list[int]]:
    """A new run of a period's hospital-level rules against the flags of an earlier run: (flags
    to insert, open flag ids to supersede). A flag the hospital answered or the bureau decided
    stands, and the same rule is not raised again for that hospital and period; an open flag
    with the same evidence stays as it is; an open flag that no longer fires, or fires with
    other numbers, is superseded."""
    by_key: dict[tuple[str, str], Stored] = {(s.hospital_code, s.rule): s for s in stored
                                              if s.status != SUPERSEDED}
    new_keys = {(r.hospital_code, r.rule) for r in raised}
    insert, supersede = [], []
    for r in raised:
        s = by_key.get((r.hospital_code, r.rule))
        if s is None:
            insert.append(r)
        elif s.status == OPEN and s.evidence != r.evidence:
            supersede.append(s.flag_id)
            insert.append(r)
    supersede += [s.flag_id for key, s in by_key.items() if s.status == OPEN and key not in new_keys]
    return insert, sorted(supersede)
