"""Helpers shared by review's tests (pytest puts this folder on `sys.path`: see conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from services.review.domain.hospital_rules import CaseFigure, Period

NOW = Period.parse("2024-05")
HISTORY = [NOW.shifted(-n) for n in range(1, 5)]


def month(hospital: str, period: Period, n: int = 40, *, level: int = 3, mcc: int = 0, high: int = 0,
          left: dict[int, int] | None = None, low: int = 0, readmit: int = 0,
          planned: bool = False) -> list[CaseFigure]:
    """`n` cases of a hospital discharged in `period`: the first `mcc` in an MCC group, the first
    `high` with RW 2.5 (else 1.0), ways by `left`, the first `low` low outliers, and `readmit`
    people coming back 18 days after an earlier stay of the same month."""
    ways = [w for w, k in (left or {}).items() for _ in range(k)]
    out = []
    for i in range(n):
        psn, adm = f"{hospital}-{period}-{i}", period.start
        if i < readmit:  # the earlier stay is case n-1-i of the same person
            psn, adm = f"{hospital}-{period}-{n - 1 - i}", period.start + timedelta(days=20)
        out.append(CaseFigure(
            f"{hospital}-{period}-c{i}", hospital, adm + timedelta(days=2), adm, psn, level,
            "AB11" if i < mcc else "AB15", Decimal("2.5") if i < high else Decimal("1.0"),
            "low_outlier" if i < low else "normal", ways[i] if i < len(ways) else 1, planned))
    return out
