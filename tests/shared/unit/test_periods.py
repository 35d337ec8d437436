"""Which stored version is in force for a region on a day (policies and DIP catalogues)."""

from __future__ import annotations

from datetime import date

from shared.periods import InForce


def test_latest_start_then_highest_version_wins_within_the_region_and_period() -> None:
    book = InForce([
        ("350500", date(2024, 1, 1), None, 1, "open-ended v1"),
        ("350500", date(2024, 1, 1), None, 2, "open-ended v2"),
        ("350500", date(2024, 7, 1), date(2024, 9, 30), 1, "summer"),
        ("350100", date(2023, 1, 1), None, 9, "another region"),
    ])
    assert book.on("350500", date(2024, 3, 1)) == "open-ended v2"
    assert book.on("350500", date(2024, 7, 1)) == "summer"
    assert book.on("350500", date(2024, 9, 30)) == "summer"
    assert book.on("350500", date(2024, 10, 1)) == "open-ended v2"
    assert book.all_on("350500", date(2024, 8, 1)) == ["summer", "open-ended v2", "open-ended v1"]


def test_nothing_is_in_force_before_the_start_elsewhere_or_without_a_date() -> None:
    book = InForce([("350500", date(2024, 1, 1), date(2024, 12, 31), 1, "p")])
    assert book.on("350500", date(2023, 12, 31)) is None
    assert book.on("350500", date(2025, 1, 1)) is None
    assert book.on("350100", date(2024, 6, 1)) is None
    assert book.on("350500", None) is None and book.all_on("350500", None) == []
