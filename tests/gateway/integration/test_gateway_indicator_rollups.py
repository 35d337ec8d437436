"""The indicator rollups (per hospital, group, department and group, hospital and group; per
month, quarter and year) stay the sums of the cells: as cases arrive, change version and are
withdrawn, after a rebuild and after the migration fills them from the cells; every breakdown ×
period kind answers the same from the rollups as from the cells; the cases per (hospital,
status) follow the cases. On SQLite and on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from services.gateway import repository
from services.gateway.domain import indicators as ind
from shared import migrate
from shared.db import create_engine, insert_many

REGIONS = ("610100", "610900")
HOSPITALS = {f"H{i}": (REGIONS[i % 2], 1 + i % 3) for i in range(7)}
SCHEMES = {"chs-drg-1.1": [f"G{n:02d}" for n in range(12)], "dip-2024": [f"D{n:02d}" for n in range(5)]}
MONTHS = ["2024-01", "2024-02", "2024-03", "2024-05", "2024-06", "2024-12", "2025-01", ""]


def _contribution(rng: random.Random) -> ind.Contribution:
    hospital = rng.choice(sorted(HOSPITALS))
    region, level = HOSPITALS[hospital]
    scheme = rng.choice(sorted(SCHEMES))
    drg = rng.choice(SCHEMES[scheme]) if rng.random() > 0.1 else ""
    key: ind.Key = (region, rng.choice(MONTHS), hospital, level, f"D{rng.randint(1, 4)}", scheme if drg else "", drg)
    cost = Decimal(rng.randint(100_00, 90_000_00)) / 100
    paid = rng.random() > 0.1
    sums: dict[str, Any] = {
        "cases": 1, "grouped": int(bool(drg)), "cost_sum": cost, "own_pay_sum": (cost / 10).quantize(Decimal("0.01")),
        "weighted": int(bool(drg)), "weight_sum": Decimal(rng.randint(1000, 40000)) / 10000 if drg else Decimal(0),
        "los_cases": int(rng.random() > 0.05), "los_sum": rng.randint(1, 30),
        "paid": int(paid), "payment_sum": Decimal(rng.randint(100_00, 50_000_00)) / 100 if paid else Decimal(0),
        "paid_cost_sum": cost if paid else Decimal(0), "fund_payment_sum": Decimal(rng.randint(0, 10_000_00)) / 100,
        "high_outliers": int(rng.random() < 0.1), "flagged": int(rng.random() < 0.2),
        "readmissions_31": int(rng.random() < 0.05), "fee_03_sum": (cost / 4).quantize(Decimal("0.01")),
    }
    if not sums["los_cases"]:
        sums["los_sum"] = 0
    rules = (rng.choice(("SPLIT_ADMISSION", "UPCODING_SECONDARY")),) if sums["flagged"] else ()
    return ind.Contribution(key, sums, rules)


async def _cells(conn: Any) -> dict[ind.Key, dict[str, Any]]:
    c = repository.indicator_cells.c
    return {tuple(r[:7]): {n: r._mapping[n] for n in ind.SUMS}  # type: ignore[misc]
            for r in (await conn.execute(select(repository.indicator_cells).where(c.cases != 0))).all()}


async def _assert_rollups_are_the_cells(engine: Any) -> None:
    async with engine.connect() as conn:
        cells = await _cells(conn)
        assert cells
        for name, columns in ind.ROLLUPS.items():
            t = repository.rollups[name]
            stored = {tuple(r[:1 + len(columns)]): {n: r._mapping[n] for n in ind.SUMS}
                      for r in (await conn.execute(select(t))).all()}
            stored = {k: v for k, v in stored.items() if any(v.values())}
            assert stored == ind.rollup(cells, columns), name
        # a batch's changes stay within its transaction
        assert (await conn.execute(select(func.count()).select_from(repository.indicator_changes))).scalar() == 0


BREAKDOWNS = [b for b in ind.BY if b != "rule"]
FILTERS: list[dict[str, Any]] = [{}, {"region": REGIONS[0]}, {"hospital": "H1"}, {"level": 2},
                                 {"region": REGIONS[1], "level": 2}, {"region": REGIONS[0], "hospital": "H2"}]
PERIODS = ["2024-05", "2024Q1", "2024Q4", "2024", "2025", "2023"]


async def _answers(engine: Any) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    groups = {"chs-drg-1.1": 600, "dip-2024": 5}
    out = {}
    async with engine.connect() as conn:
        for period in PERIODS:
            months = ind.months_of(period)
            for by in BREAKDOWNS:
                for i, f in enumerate(FILTERS):
                    found = await repository.indicator_aggregates(
                        conn, months, f.get("region"), ind.BY_COLUMN[by], hospital=f.get("hospital"),
                        level=f.get("level"))
                    out[(period, by, i)] = [{"key": a.key} | ind.from_aggregate(a, groups)
                                            for a in sorted(found, key=lambda a: str(a.key))]
            for group_by in (("scheme_id", "drg"), ("hospital_code", "hospital_level"),
                             ("region", "scheme_id", "drg"), ("hospital_level", "scheme_id", "drg")):
                sums = await repository.indicator_sums(conn, months, REGIONS[0], group_by)
                out[(period, ",".join(group_by), -1)] = sorted(sums, key=str)
                sums = await repository.indicator_sums(conn, months, None, group_by, hospital="H3")
                out[(period, ",".join(group_by), -2)] = sorted(sums, key=str)
    return out


async def _assert_answers_are_the_cells(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from_rollups = await _answers(engine)
    with monkeypatch.context() as m:
        m.setattr(repository.ind, "ROLLUPS", {})  # every query on the cells alone
        from_cells = await _answers(engine)
    assert sum(len(rows) for rows in from_cells.values()) > 500
    assert from_rollups == from_cells


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'rollups.db'}"
    new_pg_database: Callable[..., str] = request.getfixturevalue("new_pg_database")
    return new_pg_database("rollups")


async def test_rollups_are_the_sums_of_the_cells(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(db_url)
    rng = random.Random(15)
    try:
        await migrate.upgrade(engine, "gateway", "gateway_0008")
        current: dict[int, ind.Contribution | None] = {}
        # cases arrive before the rollups exist: the migration fills them from the cells
        async with engine.begin() as conn:
            first = {n: _contribution(rng) for n in range(150)}
            await conn.execute(repository.indicator_cells.insert(), [
                dict(zip(ind.KEY, k, strict=True)) | v for k, v in ind.delta(
                    [(None, c) for c in first.values()]).changed_cells().items()])
            current.update(first)
        await migrate.upgrade(engine, "gateway")
        await _assert_rollups_are_the_cells(engine)

        # more arrive, a batch at a time
        for batch in range(3):
            new = {150 + 100 * batch + n: _contribution(rng) for n in range(100)}
            async with engine.begin() as conn:
                await repository.add_to_indicators(conn, ind.delta([(None, c) for c in new.values()]))
            current.update(new)
        await _assert_rollups_are_the_cells(engine)
        await _assert_answers_are_the_cells(engine, monkeypatch)

        # new list versions (another month, department, group…) and withdrawals
        changes = []
        for n in rng.sample(sorted(current), 120):
            after = None if rng.random() < 0.3 else _contribution(rng)
            changes.append((current[n], after))
            current[n] = after
        async with engine.begin() as conn:
            await repository.add_to_indicators(conn, ind.delta(changes))
        await _assert_rollups_are_the_cells(engine)
        await _assert_answers_are_the_cells(engine, monkeypatch)

        # the rebuild: every table replaced by the cases' sums, the same rows
        async with engine.begin() as conn:
            before = await _cells(conn)
            await repository.replace_indicators(conn, ind.delta([(None, c) for c in current.values()]))
            assert await _cells(conn) == before
        await _assert_rollups_are_the_cells(engine)
    finally:
        await engine.dispose()


async def test_cases_per_hospital_and_status_follow_the_cases(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "gateway")
        async with engine.begin() as conn:
            await repository.add_to_case_counts(conn, [("H1", None, "received")] * 3 + [("H2", None, "priced")])
            await repository.add_to_case_counts(conn, [("H1", "received", "grouped"), ("H1", "received", "received"),
                                                       ("H2", "priced", "withdrawn")])
            assert await repository.count_by_status(conn) == {"received": 2, "grouped": 1, "withdrawn": 1}
            assert await repository.count_by_status(conn, "H2") == {"withdrawn": 1}
            assert await repository.count_by_status(conn, "H9") == {}
            # the rebuild counts the cases again
            now = datetime.now(UTC)
            await insert_many(conn, repository.cases, [
                {"case_id": f"H{h}-{n}", "hospital_code": f"H{h}", "list_version": 1, "status": st,
                 "updated_at": now} for h, n, st in ((1, 1, "reviewed"), (1, 2, "reviewed"), (3, 1, "priced"))])
            await repository.replace_indicators(conn, ind.Delta())
            assert await repository.count_by_status(conn) == {"reviewed": 2, "priced": 1}
            assert await repository.count_by_status(conn, "H1") == {"reviewed": 2}
            # a hospital's cases page by page, from where the last page ended
            first = await repository.list_cases(conn, "H1", None, 1, 0)
            rest = await repository.list_cases(conn, "H1", None, 10, 0, after=first[-1]["case_id"])
            assert [c["case_id"] for c in first + rest] == ["H1-1", "H1-2"]
    finally:
        await engine.dispose()
