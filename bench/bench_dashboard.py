"""The dashboard on a million cases: p50/p95/max of every request its pages make.

    .venv/bin/python bench/bench_dashboard.py [--cases 1000000] [--reps 20] [--pg URL] [--keep]

Builds the gateway's read model directly (no pipeline: the pipeline's own rate is
bench_pipeline.py's figure): `--cases` cases of one year (12 months) over `--hospitals`
hospitals of three levels in two regions, ~30 departments and the scheme's groups (popular
groups far more frequent, a level-1 hospital treating only the common ones), written with bulk
inserts through the gateway's repository: `gateway_cases` rows and each stage's result as the read
model stores it (`gateway_case_results`), and the indicator cells (and their rollups) each case adds, computed by the
gateway's own `indicators.contribution` and added by `repository.add_to_indicators` as the
consumer does (a batch at a time), with the cases per (hospital, status). Then starts every stage in one process (embedded, as `drgdip serve all`),
signs in to the dashboard as the bureau and as a hospital (session cookie) and sends every
request the pages of services/gateway/web/app.js make, `--reps` times each, through the real
app (httpx's ASGI transport: the gateway's routing, authentication, queries and JSON, no
socket). Prints p50/p95/max per request and the worst p95 against the 300 ms target.

The routes the gateway forwards (quality, flags, special cases, budget execution) answer from
the other services' tables, which this bench leaves as they are (empty): their figures are the
forwarding's cost, not those services' at a million cases.

SQLite by default, in /tmp/drgdip-bench-dashboard/ (kept with `--keep`, and then reused by the
next run with the same `--cases` and `--seed`); `--pg URL` loads a PostgreSQL database instead
(its gateway tables are emptied first).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import orjson  # noqa: E402
from sqlalchemy import delete, func, select  # noqa: E402

from services.gateway import repository as gw  # noqa: E402
from services.gateway.domain import indicators as ind  # noqa: E402
from services.gateway.domain.readmodel import ORDER  # noqa: E402
from shared.db import insert_many  # noqa: E402

YEAR = 2024
REGIONS = ("610100", "610900")  # two prefectures (Xi'an, Ankang)
SCHEME = "chs-drg-1.1"
RULES = ("SPLIT_ADMISSION", "UPCODING_SECONDARY", "LOW_STANDARD_ADMISSION", "PRIMARY_CARE_AT_TERTIARY",
         "COST_SHIFTING")
TARGET_MS = 300.0
WORKDIR = Path(os.environ.get("TMPDIR", "/tmp")) / "drgdip-bench-dashboard"
ORIGIN = "http://bench"


# --------------------------------------------------------------------------- the region

@dataclass(frozen=True)
class Hospital:
    code: str
    region: str
    level: int
    volume: float


@dataclass(frozen=True)
class Group:
    code: str
    name: str
    adrg: str
    mdc: str
    dept: str
    rw: float


def region_of(n_hospitals: int, shared: Path, rng: random.Random) -> tuple[list[Hospital], list[Group]]:
    """Hospitals (10 % level 3, 40 % level 2, the rest level 1; two thirds in the first region)
    and the scheme's groups with a department and a weight each."""
    hospitals = []
    for i in range(n_hospitals):
        level = 3 if i % 10 == 0 else 2 if i % 10 < 5 else 1
        region = REGIONS[0] if i % 3 else REGIONS[1]
        volume = {3: 12.0, 2: 4.0, 1: 1.0}[level] * rng.uniform(0.5, 1.5)
        hospitals.append(Hospital(f"H{region}{i:04d}", region, level, volume))
    drgs = orjson.loads((shared / "schemes" / SCHEME / "drg.json").read_bytes())["drgs"]
    depts = [f"D{d:02d}" for d in range(1, 31)]
    groups = [Group(d["code"], d["name"], d["adrg"], d["mdc"], depts[i % len(depts)],
                    round(rng.lognormvariate(0, 0.6), 4))
              for i, d in enumerate(drgs[:600])]
    rng.shuffle(groups)  # popularity (below) by position: not by the scheme's order
    return hospitals, groups


def _cumulative(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def cases_of(n: int, hospitals: list[Hospital], groups: list[Group], seed: int,
             ) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """(view, facts, case id) for n cases, month after month (a batch touches one month's cells,
    as the pipeline's do)."""
    rng = random.Random(seed)
    h_cum = _cumulative([h.volume for h in hospitals])
    g_cum = _cumulative([1 / (i + 1) ** 0.9 for i in range(len(groups))])  # Zipf-like popularity
    common = len(groups) // 4  # what a level-1 hospital treats
    per_month = [n // 12 + (1 if m < n % 12 else 0) for m in range(12)]
    seq = 0
    for month, count in enumerate(per_month, start=1):
        days = (date(YEAR + (month == 12), month % 12 + 1, 1) - date(YEAR, month, 1)).days
        for _ in range(count):
            seq += 1
            h = hospitals[_pick(rng, h_cum)]
            g = groups[_pick(rng, g_cum if h.level > 1 else g_cum[:common])]
            yield _case(rng, seq, h, g, date(YEAR, month, rng.randint(1, days)))


def _pick(rng: random.Random, cum: list[float]) -> int:
    import bisect
    return min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1)


def _case(rng: random.Random, seq: int, h: Hospital, g: Group, discharge: date,
          ) -> tuple[dict[str, Any], dict[str, Any], str]:
    case_id = f"{h.code}-{YEAR}-{seq:08d}"
    at = datetime(discharge.year, discharge.month, discharge.day, 12, tzinfo=UTC).isoformat()
    los = max(1, int(rng.lognormvariate(2.0, 0.5)))
    dept = g.dept if rng.random() < 0.9 else f"D{rng.randint(1, 30):02d}"
    mean = 6000 * g.rw * {3: 1.3, 2: 1.0, 1: 0.7}[h.level]
    cost = round(mean * rng.lognormvariate(0, 0.45), 2)
    stage = rng.random()
    grouped_ok = rng.random() > 0.01
    received = {"dept": dept, "los": los, "diagnoses": ["I21.000", "E11.900", "I10.x00"][: rng.randint(1, 3)],
                "procedures": ["36.0600"] if rng.random() < 0.3 else [], "event_id": f"r{seq}", "occurred_at": at}
    grouped = ({"status": "SUCCESS", "scheme_id": SCHEME, "mdc": g.mdc, "adrg": g.adrg, "drg": g.code,
                "drg_name": g.name, "event_id": f"g{seq}", "occurred_at": at} if grouped_ok else
               {"status": "NOT_GROUPED", "scheme_id": SCHEME, "event_id": f"g{seq}", "occurred_at": at})
    case_type = "high_outlier" if cost > mean * 2 else "low_outlier" if cost < mean * 0.4 else "normal"
    payment = round(10000 * g.rw * (1.0 if grouped_ok else 0.0), 2)
    priced = {"status": "PRICED" if grouped_ok else "NOT_GROUPED", "hospital_level": h.level,
              "drg": g.code if grouped_ok else None, "weight": f"{g.rw:.4f}" if grouped_ok else None,
              "payment": f"{payment:.2f}", "fund_payment": f"{payment * 0.7:.2f}", "case_type": case_type,
              "breakdown": {"case_type": case_type, "rw": f"{g.rw:.4f}", "base_rate": "10000.00",
                            "payment_standard": f"{payment:.2f}", "total_cost": f"{cost:.2f}",
                            "high_threshold": f"{mean * 2:.2f}", "low_threshold": f"{mean * 0.4:.2f}",
                            "outlier_cost": f"{cost:.2f}", "payment": f"{payment:.2f}",
                            "special_case": None, "special_review": False},
              "event_id": f"p{seq}", "occurred_at": at}
    flags = ([{"rule": rng.choice(RULES), "severity": "medium", "message": "bench"}] if rng.random() < 0.03 else [])
    reviewed = {"flags": flags, "readmission_days": rng.randint(1, 40) if rng.random() < 0.03 else None,
                "event_id": f"v{seq}", "occurred_at": at}
    # most cases went all the way; a few are still on their way
    reached = 4 if stage < 0.95 else 3 if stage < 0.98 else 2 if stage < 0.99 else 1
    texts = [orjson.dumps(x).decode() for x in (received, grouped, priced, reviewed)]
    view = {"list_version": 1, "withdrawn": False,
            **{s: texts[i] if i < reached else None for i, s in enumerate(("received", "grouped", "priced", "reviewed"))}}
    view["status"] = ("received", "grouped", "priced", "reviewed")[reached - 1]
    facts = {"hospital_code": h.code, "treatment_region": h.region, "discharge_date": discharge.isoformat(),
             "total_cost": f"{cost:.2f}", "own_pay": f"{cost * rng.uniform(0, 0.2):.2f}",
             "discharge_way": 2 if rng.random() < 0.02 else 4 if rng.random() < 0.01 else 1}
    return view, facts, case_id


# --------------------------------------------------------------------------- loading

BATCH = 20_000


async def load(engine: Any, n: int, hospitals: list[Hospital], groups: list[Group], seed: int,
               timeline_every: int) -> None:
    """Write the read model: cases and their timeline rows by bulk insert, a batch's indicator
    cells added with the gateway's own upsert."""
    async with engine.begin() as conn:
        for table in (gw.cases, gw.case_results, gw.indicator_cells, gw.indicator_rules, *gw.rollups.values(), gw.case_counts,
                      gw.timeline):
            await conn.execute(delete(table))
    started = time.perf_counter()
    done = 0
    batch: list[tuple[dict[str, Any], dict[str, Any], str]] = []

    async def flush() -> None:
        nonlocal done
        rows, results, events, changes = [], [], [], []
        now = datetime.now(UTC)
        for view, facts, case_id in batch:
            c = ind.contribution(view, facts)
            changes.append((None, c))
            reviewed = view["reviewed"]
            grouped = view["grouped"]
            rows.append({"case_id": case_id, "hospital_code": facts["hospital_code"], "list_version": 1,
                         "status": view["status"], "updated_at": now, "flagged": bool(reviewed and orjson.loads(reviewed)["flags"]),
                         "group_code": orjson.loads(grouped).get("drg") if grouped else None,
                         "indicator": c.to_json() if c else None})
            results += [{"case_id": case_id, "stage": s, "result": view[s]} for s in ORDER if view[s] is not None]
            if timeline_every and (done + len(rows)) % timeline_every == 0:
                events += [{"case_id": case_id, "event_id": f"{t}-{case_id}"[:36], "event_type": t,
                            "list_version": 1, "occurred_at": now, "producer": p}
                           for t, p in (("case-received", "ingest"), ("case-grouped", "grouper"),
                                        ("case-priced", "pricer"), ("case-flagged", "review"))]
        async with engine.begin() as conn:
            await insert_many(conn, gw.cases, rows)
            await insert_many(conn, gw.case_results, results)
            await insert_many(conn, gw.timeline, events)
            await gw.add_to_indicators(conn, ind.delta(changes))
            await gw.add_to_case_counts(conn, [(r["hospital_code"], None, r["status"]) for r in rows])
        done += len(batch)
        batch.clear()
        rate = done / (time.perf_counter() - started)
        print(f"\r  loaded {done:>9,} cases ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    for case in cases_of(n, hospitals, groups, seed):
        batch.append(case)
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    print(file=sys.stderr)


async def counts(engine: Any) -> tuple[int, int]:
    async with engine.connect() as conn:
        return (int(await conn.scalar(select(func.count()).select_from(gw.cases)) or 0),
                int(await conn.scalar(select(func.count()).select_from(gw.indicator_cells)) or 0))


# --------------------------------------------------------------------------- the requests

def requests_of(hospitals: list[Hospital], groups: list[Group], sample_case: str) -> list[tuple[str, str, str, dict]]:
    """(label, who, path, params): every request the dashboard's pages make (web/app.js), as
    the bureau and as a hospital."""
    month, prev, quarter, year = f"{YEAR}-06", f"{YEAR}-05", f"{YEAR}Q2", str(YEAR)
    big = next(h for h in hospitals if h.level == 3)
    group = groups[0].code
    i = "/api/v1/indicators"
    return [
        ("session check", "bureau", "/dashboard/session", {}),
        ("summary (overview)", "bureau", "/api/v1/summary", {}),
        ("summary (hospital)", "hospital", "/api/v1/summary", {}),
        ("quality (default period)", "bureau", "/api/v1/quality", {}),
        ("indicators month by hospital", "bureau", i, {"period": month, "by": "hospital"}),
        ("indicators prev month by hospital", "bureau", i, {"period": prev, "by": "hospital"}),
        ("indicators quarter by hospital", "bureau", i, {"period": quarter, "by": "hospital"}),
        ("indicators month by hospital (hosp.)", "hospital", i, {"period": month, "by": "hospital"}),
        ("indicators year by month (trend)", "bureau", i, {"period": year, "by": "month"}),
        ("indicators month by level", "bureau", i, {"period": month, "by": "level"}),
        *[(f"indicators month by hospital level={lv}", "bureau", i, {"period": month, "by": "hospital",
                                                                      "level": str(lv)}) for lv in (3, 2, 1)],
        ("indicators month by group", "bureau", i, {"period": month, "by": "group"}),
        ("indicators month by group (hosp.)", "hospital", i, {"period": month, "by": "group"}),
        ("indicators month by department", "bureau", i, {"period": month, "by": "department"}),
        ("indicators month by region", "bureau", i, {"period": month, "by": "region"}),
        ("indicators month by rule (flags)", "bureau", i, {"period": month, "by": "rule"}),
        ("indicators year by region (budget)", "bureau", i, {"period": year, "by": "region"}),
        ("indicators year by hospital (drill)", "bureau", i, {"period": year, "by": "hospital"}),
        ("indicators year by group, hospital", "bureau", i, {"period": year, "by": "group", "hospital": big.code}),
        ("budget execution", "bureau", "/api/v1/indicators/budget", {"region": REGIONS[0], "year": year}),
        ("quality (hospital)", "hospital", "/api/v1/quality", {}),
        ("flags", "bureau", "/api/v1/flags", {"limit": "200"}),
        ("special cases", "bureau", "/api/v1/special-cases", {"limit": "200"}),
        ("cases of a hospital", "bureau", "/api/v1/cases", {"hospital": big.code, "limit": "50"}),
        ("cases of a hospital's group", "bureau", "/api/v1/cases", {"hospital": big.code, "group": group,
                                                                    "limit": "100"}),
        ("cases (hospital's own)", "hospital", "/api/v1/cases", {"limit": "50"}),
        ("cases flagged", "bureau", "/api/v1/cases", {"flagged": "true", "limit": "100"}),
        ("case detail", "bureau", f"/api/v1/cases/{sample_case}", {}),
    ]


async def sign_in(app: Any, engine: Any, role: str, hospital: str | None) -> httpx.AsyncClient:
    async with engine.begin() as conn:
        _id, token = await gw.create_token(conn, role, hospital, label="bench")
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, timeout=120)
    r = await web.post("/dashboard/session", content=f"token={token}",
                       headers={"content-type": "application/x-www-form-urlencoded", "origin": ORIGIN})
    r.raise_for_status()
    return web


async def measure(app: Any, engine: Any, hospitals: list[Hospital], groups: list[Group], reps: int,
                  ) -> list[tuple[str, list[float], int]]:
    big = next(h for h in hospitals if h.level == 3)
    async with engine.connect() as conn:
        sample = (await conn.execute(select(gw.cases.c.case_id).where(gw.cases.c.hospital_code == big.code)
                                     .limit(1))).scalar()
    clients = {"bureau": await sign_in(app, engine, "bureau-analyst", None),
               "hospital": await sign_in(app, engine, "hospital", big.code)}
    out = []
    try:
        for label, who, path, params in requests_of(hospitals, groups, str(sample)):
            times = []
            status = 0
            for _ in range(reps + 1):  # the first one warms the caches up and is not counted
                t = time.perf_counter()
                r = await clients[who].get(path, params=params)
                times.append((time.perf_counter() - t) * 1000)
                status = r.status_code
            out.append((label, times[1:], status))
            print(f"  {label}: p95 {_p(times[1:], 95):.0f} ms", file=sys.stderr)
    finally:
        for c in clients.values():
            await c.aclose()
    return out


def _p(values: list[float], pct: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(pct / 100 * len(s)) - 1))]


def report(results: list[tuple[str, list[float], int]], backend: str, n: int, cells: int) -> float:
    print(f"dashboard requests on {n:,} cases ({cells:,} indicator cells), {backend}, "
          f"{len(results[0][1])} repetitions each")
    print(f"{'request':<42}{'status':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, times, status in results:
        p95 = _p(times, 95)
        mark = "" if p95 < TARGET_MS else "  > target"
        print(f"{label:<42}{status:>7}{statistics.median(times):>9.1f}{p95:>9.1f}{max(times):>9.1f}{mark}")
    worst = max(results, key=lambda r: _p(r[1], 95))
    p95 = _p(worst[1], 95)
    print(f"worst p95: {p95:.1f} ms ({worst[0]}); target {TARGET_MS:.0f} ms: "
          f"{'met' if p95 < TARGET_MS else 'MISSED'}")
    return p95


# --------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> int:
    from drgdip.stages import build_runtime

    rng = random.Random(args.seed)
    hospitals, groups = region_of(args.hospitals, args.shared, rng)
    if args.pg:
        db, backend = args.pg, "PostgreSQL"
    else:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        db_file = WORKDIR / f"dashboard-{args.cases}-{args.seed}.db"
        if not args.keep and db_file.exists():
            db_file.unlink()
        db, backend = f"sqlite+aiosqlite:///{db_file}", "SQLite"
    rt = build_runtime("all", bus="memory://", db=db, schemes_dir=args.shared / "schemes", log_level="WARNING")
    await rt.start()
    try:
        n, cells = await counts(rt.engine)
        if n != args.cases or not args.keep:
            t = time.perf_counter()
            await load(rt.engine, args.cases, hospitals, groups, args.seed, args.timeline_every)
            if rt.engine.dialect.name == "postgresql":
                async with rt.engine.connect() as conn:
                    await conn.exec_driver_sql("ANALYZE")
            else:
                async with rt.engine.begin() as conn:
                    await conn.exec_driver_sql("ANALYZE")
            n, cells = await counts(rt.engine)
            print(f"built the read model: {n:,} cases, {cells:,} indicator cells in "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
        results = await measure(rt.app, rt.engine, hospitals, groups, args.reps)
    finally:
        await rt.stop()
        if not args.pg and not args.keep:
            db_file.unlink(missing_ok=True)
    worst = report(results, backend, n, cells)
    return 0 if worst < TARGET_MS else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", type=int, default=1_000_000)
    p.add_argument("--hospitals", type=int, default=200)
    p.add_argument("--reps", type=int, default=20, help="repetitions of each request")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeline-every", type=int, default=10,
                   help="every n-th case gets its four timeline rows (0: none)")
    p.add_argument("--pg", default=None, help="a PostgreSQL URL (postgresql+asyncpg://…) instead of SQLite")
    p.add_argument("--keep", action="store_true", help="keep the SQLite file and reuse it next time")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")))
    args = p.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
