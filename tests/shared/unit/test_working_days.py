"""Working days by a calendar of public holidays and make-up working days (shared/periods.py)."""

from __future__ import annotations

from datetime import date, timedelta

from shared.periods import add_working_days, is_working_day, working_days_between

# National Day 2024: 1–7 October off, Sunday 29 September and Saturday 12 October worked (调休)
HOLIDAYS = {date(2024, 10, 1) + timedelta(days=i) for i in range(7)}
WORKDAYS = {date(2024, 9, 29), date(2024, 10, 12)}


def test_weekends_holidays_and_make_up_days() -> None:
    assert not is_working_day(date(2024, 10, 2), HOLIDAYS, WORKDAYS)
    assert is_working_day(date(2024, 10, 12), HOLIDAYS, WORKDAYS)
    assert not is_working_day(date(2024, 10, 13), HOLIDAYS, WORKDAYS)


def test_the_days_from_a_declaration_to_its_settlement() -> None:
    # declared Friday 27 September; the 20th working day: 29.9 (Sunday, worked), 30.9, 8–12.10 (Saturday
    # 12.10 worked), 14–18.10, 21–25.10, 28–30.10
    settled = add_working_days(date(2024, 9, 27), 20, HOLIDAYS, WORKDAYS)
    assert settled == date(2024, 10, 30)
    assert working_days_between(date(2024, 9, 27), settled, HOLIDAYS, WORKDAYS) == 20
    assert working_days_between(date(2024, 9, 27), settled) == 23  # without the calendar: 23 weekdays
    assert working_days_between(date(2024, 3, 5), date(2024, 3, 5)) == 0
