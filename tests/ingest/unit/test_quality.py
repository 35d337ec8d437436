"""Quality scores per hospital and month: timeliness, completeness, pass rate, accuracy."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from services.ingest.domain.national import Problem
from services.ingest.domain.qc import required_field_count
from services.ingest.domain.quality import (
    DEFAULT_DEADLINE_DAYS,
    ListRecord,
    QualityScore,
    is_timely,
    ratio,
    score_quality,
)

MISSING = Problem("setlinfo.medcasno", "QC-REQ-001", "必填项缺失", "missing")
UNKNOWN_CODE = Problem("diseinfo[0].diag_code", "QC-DICT-001", "诊断编码不在字典中", "unknown")
SYMPTOM = Problem("diseinfo[0].diag_code", "QC-DX-004", "症状", "symptom", "warning")
DISCHARGED = date(2025, 3, 1)


def rec(problems: list[Problem], *, hospital: str = "H1", uploaded: datetime | None = None,
        required: int = 10) -> ListRecord:
    return ListRecord(hospital, "2025-03", DISCHARGED,
                      uploaded or datetime(2025, 3, 5, 10, 0), problems, required)


def test_timeliness_deadline_in_cst_calendar_days() -> None:
    assert DEFAULT_DEADLINE_DAYS == 30
    assert is_timely(DISCHARGED, datetime(2025, 3, 31, 23, 59))  # day 30, naive = CST
    assert not is_timely(DISCHARGED, datetime(2025, 4, 1, 0, 1))  # day 31
    # 2025-03-31 16:30 UTC is already 2025-04-01 00:30 in Beijing: late
    assert not is_timely(DISCHARGED, datetime(2025, 3, 31, 16, 30, tzinfo=UTC))
    assert is_timely(DISCHARGED, datetime(2025, 3, 31, 15, 30, tzinfo=UTC))
    assert is_timely(DISCHARGED, datetime(2025, 3, 8), deadline_days=7)
    assert not is_timely(DISCHARGED, datetime(2025, 3, 9), deadline_days=7)


def test_scores_per_hospital_and_month() -> None:
    records = [
        rec([]),
        rec([MISSING, MISSING]),  # two missing fields: fails, but accurate
        rec([UNKNOWN_CODE, SYMPTOM], uploaded=datetime(2025, 5, 1)),  # late, inaccurate
        rec([SYMPTOM]),  # warnings pass
        rec([], hospital="H2"),
    ]
    h1, h2 = score_quality(records)
    assert isinstance(h1, QualityScore)
    assert (h1.hospital, h1.month, h1.lists) == ("H1", "2025-03", 4)
    assert (h1.timely, h1.passed, h1.accurate, h1.warnings) == (3, 2, 3, 2)
    assert (h1.required_fields, h1.missing_fields) == (40, 2)
    assert h1.timeliness == Decimal("0.7500")
    assert h1.pass_rate == Decimal("0.5000")
    assert h1.accuracy == Decimal("0.7500")
    assert h1.completeness == Decimal("0.9500")
    assert (h2.lists, h2.timeliness, h2.completeness, h2.pass_rate, h2.accuracy) == (
        1, Decimal("1.0000"), Decimal("1.0000"), Decimal("1.0000"), Decimal("1.0000"))


def test_months_are_scored_apart_and_sorted() -> None:
    march = rec([])
    feb = ListRecord("H1", "2025-02", date(2025, 2, 1), datetime(2025, 2, 2), [UNKNOWN_CODE])
    scores = score_quality([march, feb])
    assert [(s.month, s.pass_rate) for s in scores] == [
        ("2025-02", Decimal("0.0000")), ("2025-03", Decimal("1.0000"))]


def test_plain_tuples_and_default_required_count() -> None:
    [score] = score_quality([("H1", "2025-03", DISCHARGED, datetime(2025, 3, 2), [MISSING])])
    assert score.required_fields == required_field_count("4101")
    assert score.missing_fields == 1


def test_ratios_are_decimal_with_four_places() -> None:
    assert ratio(1, 3) == Decimal("0.3333") and ratio(2, 3) == Decimal("0.6667")
    assert ratio(0, 0) == Decimal("1.0000")
    [score] = score_quality([rec([]), rec([]), rec([UNKNOWN_CODE])])
    for value in (score.timeliness, score.completeness, score.pass_rate, score.accuracy):
        assert isinstance(value, Decimal) and value.as_tuple().exponent == -4
    assert score.pass_rate == Decimal("0.6667")


def test_missing_fields_clamped_to_the_list() -> None:
    [score] = score_quality([rec([MISSING] * 5, required=3)])
    assert score.completeness == Decimal("0.0000")
