"""The flag workflow: the answer deadline in working days (weekends, holidays and make-up days of
the calendar parameter, China Standard Time), the steps and the stable codes of a refusal, and
how a new run of the hospital-level rules treats the flags of an earlier one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.review.domain.hospital_rules import HospitalFlag
from services.review.domain.parameters import FlagWorkflow
from services.review.domain.workflow import (
    ANSWERED,
    CONFIRMED,
    DISMISSED,
    OPEN,
    FlagState,
    Stored,
    add_working_days,
    answer,
    answer_deadline,
    decide,
    deduction_of,
    reconcile,
)
from shared.errors import Conflict, Invalid

PLAIN = FlagWorkflow()
# 2024 National Day: 1-7 October off, Sunday 29 September and Saturday 12 October worked (调休)
NATIONAL_DAY = FlagWorkflow(holidays=tuple(date(2024, 10, d) for d in range(1, 8)),
                            workdays=(date(2024, 9, 29), date(2024, 10, 12)))


def test_ten_working_days_skip_weekends() -> None:
    assert add_working_days(date(2024, 3, 1), 10, PLAIN) == date(2024, 3, 15)  # Friday to Friday
    assert add_working_days(date(2024, 3, 2), 1, PLAIN) == date(2024, 3, 4)  # Saturday: Monday
    assert add_working_days(date(2024, 3, 2), 0, PLAIN) == date(2024, 3, 2)


def test_holidays_and_make_up_days_come_from_the_calendar_parameter() -> None:
    # 29 Sep (worked Sunday), 30 Sep, 8-11 Oct, 12 Oct (worked Saturday), 14-16 Oct
    assert add_working_days(date(2024, 9, 27), 10, NATIONAL_DAY) == date(2024, 10, 16)
    assert add_working_days(date(2024, 9, 27), 10, PLAIN) == date(2024, 10, 11)
    assert add_working_days(date(2024, 9, 27), 5, FlagWorkflow(answer_working_days=5)) == date(2024, 10, 4)


def test_the_deadline_counts_from_the_china_standard_time_day() -> None:
    # 17:00 UTC on Sunday 3 March is 01:00 on Monday 4 March in China
    assert answer_deadline(datetime(2024, 3, 3, 17, 0, tzinfo=UTC), PLAIN) == date(2024, 3, 18)
    assert answer_deadline(datetime(2024, 3, 3, 15, 0, tzinfo=UTC), PLAIN) == date(2024, 3, 15)
    assert answer_deadline(datetime(2024, 3, 3, 15, 0, tzinfo=UTC), FlagWorkflow(answer_working_days=3)) == \
        date(2024, 3, 6)


def _state(status: str = OPEN) -> FlagState:
    return FlagState(7, "H1", status, date(2024, 3, 15))


def _at(day: int, hour: int = 3) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


def _code(e: pytest.ExceptionInfo) -> str:
    return str(e.value.code)  # type: ignore[attr-defined]


def test_the_hospital_answers_by_the_deadline() -> None:
    done = answer(_state(), "  the patient asked to be transferred  ", "token:h", _at(15, 15))  # 23:00 CST
    assert done.status == ANSWERED and done.answer == "the patient asked to be transferred"
    with pytest.raises(Conflict) as e:
        answer(_state(), "late", "token:h", _at(15, 16))  # 00:00 CST on the 16th
    assert _code(e) == "ANSWER_DEADLINE_PASSED"
    with pytest.raises(Conflict) as e:
        answer(done, "again", "token:h", _at(10))
    assert _code(e) == "FLAG_ANSWERED"
    with pytest.raises(Invalid) as e:
        answer(_state(), "   ", "token:h", _at(10))
    assert _code(e) == "REQUIRED" and e.value.field == "answer"
    with pytest.raises(Conflict) as e:
        answer(_state("superseded"), "x", "token:h", _at(10))
    assert _code(e) == "FLAG_SUPERSEDED"


def test_the_bureau_decides_after_the_answer_or_the_deadline() -> None:
    with pytest.raises(Conflict) as e:  # the hospital may still answer
        decide(_state(), CONFIRMED, "coded up", None, "token:r", _at(15))
    assert _code(e) == "ANSWER_PENDING"
    late = decide(_state(), CONFIRMED, "no answer came", Decimal("100.00"), "token:r", _at(16, 16))
    assert late.status == CONFIRMED and late.deduction == Decimal("100.00")
    answered = answer(_state(), "planned transfer", "token:h", _at(4))
    ok = decide(answered, CONFIRMED, "the transfer was not planned", Decimal("1234.56"), "token:r", _at(5))
    assert (ok.status, ok.decided_by, ok.deduction) == (CONFIRMED, "token:r", Decimal("1234.56"))
    assert decide(_state(), DISMISSED, "a coding error, corrected", None, "token:r", _at(4)).status == DISMISSED
    with pytest.raises(Conflict) as e:
        decide(ok, DISMISSED, "second thoughts", None, "token:r", _at(6))
    assert _code(e) == "FLAG_DECIDED"
    for outcome, reason, amount, code, field in (
            ("maybe", "x", None, "INVALID_OUTCOME", "outcome"),
            (DISMISSED, "x", Decimal(5), "DEDUCTION_NOT_ALLOWED", "deduction"),
            (CONFIRMED, "", None, "REQUIRED", "reason")):
        with pytest.raises(Invalid) as e:
            decide(answered, outcome, reason, amount, "token:r", _at(5))
        assert (_code(e), e.value.field) == (code, field)


def test_a_deduction_is_yuan_to_the_fen() -> None:
    assert deduction_of("1234.5") == Decimal("1234.50") and deduction_of(None) is None
    assert deduction_of("0") == Decimal("0.00")
    for bad in ("12.345", "-1", "NaN", "lots", "1e12", "Infinity"):
        with pytest.raises(Invalid) as e:
            deduction_of(bad)
        assert e.value.field == "deduction"


def _flag(hospital: str, rule: str, value: str) -> HospitalFlag:
    return HospitalFlag(hospital, "2024-05", rule, "high", "m", {"share": value})


def test_a_new_run_keeps_answered_and_decided_flags_and_replaces_changed_open_ones() -> None:
    stored = [Stored(1, "H1", "REFUSING_SEVERE", OPEN, {"share": "0.1"}),
              Stored(2, "H2", "REFUSING_SEVERE", OPEN, {"share": "0.1"}),
              Stored(3, "H3", "REFUSING_SEVERE", ANSWERED, {"share": "0.1"}),
              Stored(4, "H4", "UNDER_SERVICE", CONFIRMED, {"share": "0.1"}),
              Stored(5, "H5", "UNDER_SERVICE", OPEN, {"share": "0.1"})]
    raised = [_flag("H1", "REFUSING_SEVERE", "0.1"),  # the same: stays
              _flag("H2", "REFUSING_SEVERE", "0.2"),  # other numbers: replaced
              _flag("H3", "REFUSING_SEVERE", "0.3"),  # answered: stands
              _flag("H4", "UNDER_SERVICE", "0.3"),  # decided: stands
              _flag("H6", "UNDER_SERVICE", "0.3")]  # new
    insert, supersede = reconcile(stored, raised)  # H5 no longer fires: superseded
    assert [(f.hospital_code, f.evidence["share"]) for f in insert] == [("H2", "0.2"), ("H6", "0.3")]
    assert supersede == [2, 5]
