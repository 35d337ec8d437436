"""Settlement timeliness against the 20-working-day rule, the calendar document, budget execution
and the prepayment publication (services/pricer/domain/timeliness.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from services.pricer.domain.policy import Settlement
from services.pricer.domain.timeliness import (
    Calendar,
    CalendarError,
    budget_execution,
    parse_calendar,
    prepayments,
    timeliness,
    timeliness_report,
)
from shared.errors import Invalid
from shared.periods import add_working_days, cst_day

EXAMPLE = Path(__file__).parents[3] / "examples" / "calendar-2025.json"


@pytest.fixture(scope="module")
def cal2025() -> Calendar:
    return Calendar.of(parse_calendar(orjson.loads(EXAMPLE.read_bytes()))[1])


def at(day: str, hour: int = 2) -> datetime:
    """A time on that day in China (02:00 UTC is 10:00 CST)."""
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def test_the_example_calendar_is_the_2025_arrangement() -> None:
    year, days = parse_calendar(orjson.loads(EXAMPLE.read_bytes()))
    assert year == 2025
    holidays = [d for d in days if d.kind == "holiday"]
    workdays = [d.day for d in days if d.kind == "workday"]
    assert len(holidays) == 1 + 8 + 3 + 5 + 3 + 8
    assert workdays == [date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28),
                        date(2025, 10, 11)]
    assert all(d.weekday() >= 5 for d in workdays)


def test_working_days_across_the_spring_festival_with_its_make_up_days(cal2025: Calendar) -> None:
    # declared Friday 24 January: Sunday 26 (调休) and Monday 27 count, 28 Jan – 4 Feb are off,
    # 5–7 Feb count, Saturday 8 Feb (调休) counts, Monday 10 Feb is the 7th working day
    assert cal2025.working_days(date(2025, 1, 24), date(2025, 2, 10)) == 7
    # without the calendar the same span is 11 weekdays
    assert Calendar().working_days(date(2025, 1, 24), date(2025, 2, 10)) == 11
    assert cal2025.working_days(date(2025, 1, 27), date(2025, 2, 4)) == 0


def test_within_and_over_the_rule_across_national_day(cal2025: Calendar) -> None:
    # declared Friday 19 September: the 20th working day is Thursday 23 October
    # (Sunday 28 Sep and Saturday 11 Oct worked, 1–8 October off)
    assert add_working_days(date(2025, 9, 19), 20, cal2025.holidays, cal2025.workdays) == date(2025, 10, 23)
    within = timeliness("H1", "2025-09", at("2025-09-19"), at("2025-10-23"), date(2025, 12, 1), cal2025, 20)
    assert (within.working_days, within.status, within.within_rule) == (20, "within", True)
    late = timeliness("H1", "2025-09", at("2025-09-19"), at("2025-10-24"), date(2025, 12, 1), cal2025, 20)
    assert (late.working_days, late.status, late.within_rule) == (21, "late", False)
    # the limit is the policy's parameter
    assert timeliness("H1", "2025-09", at("2025-09-19"), at("2025-10-24"), date(2025, 12, 1), cal2025,
                      25).status == "within"
    assert Settlement().settlement_working_days == 20


def test_pending_counts_the_working_days_so_far(cal2025: Calendar) -> None:
    pending = timeliness("H2", "2025-09", at("2025-09-19"), None, date(2025, 10, 10), cal2025, 20)
    assert (pending.working_days, pending.status, pending.within_rule) == (10, "pending", None)
    overdue = timeliness("H2", "2025-09", at("2025-09-19"), None, date(2025, 10, 24), cal2025, 20)
    assert (overdue.working_days, overdue.status) == (21, "overdue")
    undeclared = timeliness("H3", "2025-09", None, at("2025-10-01"), date(2025, 10, 24), cal2025, 20)
    assert (undeclared.working_days, undeclared.status, undeclared.within_rule) == (None, "not_declared", None)


def test_days_are_counted_in_china_standard_time() -> None:
    # 16:30 UTC on Friday is 00:30 on Saturday in China
    assert cst_day(datetime(2025, 9, 19, 15, 30, tzinfo=UTC)) == date(2025, 9, 19)
    assert cst_day(datetime(2025, 9, 19, 16, 30, tzinfo=UTC)) == date(2025, 9, 20)
    assert cst_day(datetime(2025, 9, 19, 16, 30)) == date(2025, 9, 20)  # naive: UTC


def test_report_lists_late_and_pending(cal2025: Calendar) -> None:
    report = timeliness_report(
        "2025-09", {"A": at("2025-09-19"), "B": at("2025-09-19"), "C": at("2025-09-19")},
        {"A": at("2025-10-20"), "B": at("2025-10-30"), "D": at("2025-10-01")}, date(2025, 10, 20), cal2025, 20)
    assert [(r["hospital_code"], r["status"]) for r in report["rows"]] == [
        ("A", "within"), ("B", "late"), ("C", "pending"), ("D", "not_declared")]
    assert report["late"] == ["B"] and report["pending"] == ["C"]
    assert report["counts"]["within"] == 1 and report["timely_rate"] == "0.5000"


@pytest.mark.parametrize(("doc", "field"), [
    ({"year": 2025, "workdays": [{"date": "2025-01-27"}]}, "workdays[0]"),  # a Monday
    ({"year": 2025, "holidays": [{"date": "2026-01-01"}]}, "holidays[0]"),
    ({"year": 2025, "holidays": [{"from": "2025-02-04", "to": "2025-01-28"}]}, "holidays[0].to"),
    ({"year": 2025, "holidays": [{"date": "2025-13-01"}]}, "holidays[0].date"),
    ({"year": "2025"}, "year"),
    ({"year": 2025, "format": "other/1"}, "format"),
    ({"year": 2025, "holidays": [{"date": "2025-01-26"}], "workdays": [{"date": "2025-01-26"}]}, "workdays[0]"),
])
def test_a_bad_calendar_names_the_field(doc: dict, field: str) -> None:
    with pytest.raises(CalendarError) as e:
        parse_calendar(doc)
    assert e.value.field == field and e.value.code == "INVALID_CALENDAR"


def test_budget_execution_cumulates_per_month() -> None:
    months = [{"period": "2025-01", "presettled": Decimal("250.00")},
              {"period": "2025-02", "presettled": Decimal("150.00")}]
    doc = budget_execution(months, Decimal("1000.00"), Decimal("10.000000"), Decimal("9.500000"))
    assert [m["presettled_cumulative"] for m in months] == [Decimal("250.00"), Decimal("400.00")]
    assert [m["budget_share"] for m in months] == ["0.2500", "0.1500"]
    assert [m["budget_share_cumulative"] for m in months] == ["0.2500", "0.4000"]
    assert (doc["paid"], doc["remaining"], doc["execution_rate"]) == (Decimal("400.00"), Decimal("600.00"), "0.4000")
    assert doc["point_value_ratio"] == "0.9500"
    unset = budget_execution([{"period": "2025-01", "presettled": Decimal(1)}], None, None, None)
    assert unset["execution_rate"] is None and unset["point_value_ratio"] is None


def test_prepayments_granted_netted_outstanding() -> None:
    rows = prepayments({"H1": Decimal("100.00"), "H2": Decimal("50.00")}, {"H1": Decimal("100.00")})
    assert rows == [
        {"hospital_code": "H1", "granted": Decimal("100.00"), "netted": Decimal("100.00"), "outstanding": Decimal(0)},
        {"hospital_code": "H2", "granted": Decimal("50.00"), "netted": Decimal(0), "outstanding": Decimal("50.00")}]


def test_a_budget_is_whole_fen() -> None:
    from services.pricer.domain.timeliness import check_budget

    with pytest.raises(Invalid) as e:
        check_budget(Decimal("10.001"), None)
    assert e.value.field == "amount"
    with pytest.raises(Invalid) as e:
        check_budget(Decimal("10"), Decimal("0"))
    assert e.value.field == "point_value"
