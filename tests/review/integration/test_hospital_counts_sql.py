"""The hospital-level rules' figures summed by the database (GROUP BY per hospital, period and
discharge way, readmissions by a correlated EXISTS) equal the figures counted in memory from the
same cases, on SQLite and PostgreSQL; so do the flags judged on them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from review_testkit import HISTORY, NOW, month
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.cli import in_transaction
from services.review.domain.hospital_rules import (
    CaseFigure,
    Period,
    count_periods,
    history_start,
    judge,
    periods_needed,
)
from services.review.domain.parameters import RuleParameters

REGION = "350500"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("review_counts"))


def _cases() -> list[CaseFigure]:
    """Four hospitals over the period and its history, mixed: RWs with 4 places and none, DRGs of
    every split, levels (one hospital without), discharge ways (some unknown), low outliers,
    readmissions within a month, planned ones, and readmissions across a month's end."""
    cases: list[CaseFigure] = []
    for p in [NOW, *HISTORY]:
        k = p.first_month
        cases += month("H1", p, n=35 + k, mcc=k, high=2 * k, left={2: k % 3, 4: 1}, low=k, readmit=k % 4)
        cases += month("H2", p, n=40, level=2, mcc=10, high=3, left={2: 5}, low=2, readmit=2, planned=k == 2)
        cases += month("H3", p, n=31, level=2, mcc=12 - k, high=9, low=k % 2, readmit=1)
    # odd figures: unknown RWs and ways, other DRG splits, no level, RWs to the 4th place
    odd = []
    for i, c in enumerate(month("H4", NOW, n=33) + month("H4", HISTORY[0], n=33)):
        odd.append(replace(c, weight=None if i % 7 == 0 else Decimal("1.2345") + Decimal(i) / 1000,
                           drg=("AB13", "AB1", "AB19", "ZZ21", "AB15")[i % 5], hospital_level=None,
                           discharge_way=None if i % 5 == 0 else (i % 5), case_type="low_outlier" if i % 6 == 0 else
                           "high_outlier"))
    cases += odd
    # a person discharged on a month's last day and back 10 days later, and one 40 days later
    for n, gap in ((1, 10), (2, 40)):
        first_out = HISTORY[0].end - timedelta(days=1)
        cases.append(CaseFigure(f"X{n}a", "H1", first_out, first_out - timedelta(days=3), f"X{n}", 3, "AB15",
                                Decimal(1), "normal", 1))
        back = first_out + timedelta(days=gap)
        cases.append(CaseFigure(f"X{n}b", "H1", back + timedelta(days=2), back, f"X{n}", 3, "AB15", Decimal(1),
                                "normal", 1))
    return cases


def _row(c: CaseFigure, region: str = REGION, withdrawn: bool = False) -> dict[str, Any]:
    return dict(case_id=c.case_id, region=region, hospital_code=c.hospital_code, hospital_level=c.hospital_level,
                psn_key=c.psn_key, admission_date=c.admission_date, discharge_date=c.discharge_date, drg=c.drg,
                weight=c.weight, case_type=c.case_type, discharge_way=c.discharge_way, planned=c.planned,
                withdrawn=withdrawn, facts="{}")  # the facts: not read by the hospital-level rules


def _rows() -> list[dict[str, Any]]:
    rows = [_row(c) for c in _cases()]
    # left out: another region's cases and a withdrawn earlier stay that would make a readmission
    rows += [_row(replace(c, case_id="other-" + c.case_id), region="350600") for c in month("H1", NOW, n=5)]
    start = NOW.start
    rows.append(_row(CaseFigure("W1", "H2", start, start - timedelta(days=2), "W", 2, "AB15", Decimal(1),
                                "normal", 1), withdrawn=True))
    rows.append(_row(CaseFigure("W2", "H2", start + timedelta(days=9), start + timedelta(days=5), "W", 2, "AB15",
                                Decimal(1), "normal", 1)))
    return rows


@pytest.mark.parametrize("period", ["2024-05", "2024Q2"])
def test_the_database_sums_equal_the_counts_in_memory(db_url: str, period: str) -> None:
    params = RuleParameters()
    p = Period.parse(period)
    periods = periods_needed(p, params)

    async def seed(conn: AsyncConnection) -> None:
        await repository.save_stays(conn, _rows())

    async def both(conn: AsyncConnection) -> tuple[Any, Any]:
        in_db = await repository.hospital_counts(conn, REGION, periods, readmission_days=31,
                                                 high_rw=params.refusing_severe.high_rw)
        cases = await repository.load_hospital_figures(conn, REGION, history_start(p, params), p.end)
        return in_db, count_periods(cases, periods, params)

    in_transaction(db_url, seed)
    in_db, in_memory = in_transaction(db_url, both)
    assert in_db == in_memory
    if period == "2024-05":  # the data are what they should be: the rules see real figures
        now = in_db[NOW]
        # H1: one of the month's own, and X1 back 10 days after April's last day (X2: 40 days)
        assert set(now) == {"H1", "H2", "H3", "H4"} and now["H1"].readmissions == 2
        assert now["H4"].level is None and now["H4"].weighted == 28 and now["H4"].left.get(1) == 7
        assert now["H2"].readmissions == 2  # W2 comes after W1, withdrawn: no readmission
        assert in_db[HISTORY[0]]["H1"].readmissions == HISTORY[0].first_month % 4
    assert judge(in_db, p, params) == judge(in_memory, p, params)
