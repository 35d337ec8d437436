"""End-to-end throughput of the embedded pipeline: cases/s per stage and overall.

    .venv/bin/python bench/bench_pipeline.py [--cases 20000] [--hospitals 20] [--scheme-path DIR]

Generates a synthetic region (3 years, seeded) into a JSON Lines file, calibrates weights on it
with the pure core and imports a point-method policy for each of the three years (so that every
case of the region is priced for real), starts all five stages in one process (in-process bus,
one SQLite file, as `drgdip demo`), bulk-imports the file through ingest's `Intake` and polls
each stage's table. A stage's time is from the start of the import
until its table holds every accepted case (ingest_lists, grouper_results, pricer_results,
review_results; for the gateway, read-model rows reviewed or withdrawn); its rate is accepted
cases / that time. The stages overlap, so each figure is the pipeline's rate up to that stage.

The scheme folder defaults to $DRGDIP_SCHEME_PATH, else <shared>/schemes/chs-drg-1.1 with
<shared> = $DRGDIP_SHARED or <repo>/../shared.

The 200,000-case run (`--cases 200000`) is the figure to quote for a prefecture-sized region:
run it before a release and note the result. Measured on the 2-core development machine
(2026-11-23): 20,000 lists ~700 cases/s; 200,000 lists 599 cases/s end to end (5.5 min,
1 GB resident). `bench_cores.py` gives the floor of the
one-process pipeline: what the pure cores alone cost per case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from drgdip.demo import (  # noqa: E402
    YEARS,
    embedded_runtime,
    pipeline_idle,
    region_policies,
    resolve_scheme,
    stage,
    write_region,
)
from drgdip.generate import RegionGenerator  # noqa: E402
from services.grouper.domain import load_scheme  # noqa: E402
from services.pricer.handlers import import_policy  # noqa: E402
from shared.runtime import Runtime  # noqa: E402

STAGES = ("ingest", "grouper", "pricer", "review", "gateway")


async def stage_counts(runtime: Runtime) -> dict[str, int]:
    """Rows per stage table, in one connection (the embedded SQLite engine has only one)."""
    from services.gateway.repository import cases as read_model
    from services.grouper.repository import results as grouped
    from services.ingest.repository import lists
    from services.pricer.repository import results as priced
    from services.review.repository import results as reviewed

    queries = {
        "ingest": select(func.count()).select_from(lists),
        "grouper": select(func.count()).select_from(grouped),
        "pricer": select(func.count()).select_from(priced),
        "review": select(func.count()).select_from(reviewed),
        "gateway": select(func.count()).select_from(read_model)
        .where(read_model.c.status.in_(("reviewed", "withdrawn"))),
    }
    async with runtime.engine.connect() as conn:
        return {name: int(await conn.scalar(q) or 0) for name, q in queries.items()}


async def run(scheme_path: Path, cases: int, hospitals: int, seed: int, workdir: Path, timeout: float) -> None:
    console = Console(stderr=True)
    scheme = load_scheme(scheme_path)
    data = workdir / "region.jsonl"
    t = time.perf_counter()
    gen = RegionGenerator(scheme, hospitals=hospitals, cases=cases, seed=seed, years=YEARS)
    history = write_region(gen, data)
    generated = time.perf_counter() - t
    print(f"generated {cases:,} lists ({scheme.id}, {hospitals} hospitals) in {generated:.1f} s "
          f"({cases / generated:,.0f} lists/s)")
    policies = region_policies(gen, history)

    from services.ingest.handlers import file_chunks, import_stream

    runtime = embedded_runtime(scheme, scheme_path, workdir / "drgdip.db")
    await runtime.start()
    async with runtime.engine.begin() as conn:
        for policy in policies:
            await import_policy(conn, orjson.dumps(policy.to_document()), who="bench")
    reached: dict[str, float] = {}
    try:
        started = time.perf_counter()
        importing = asyncio.create_task(import_stream(stage(runtime, "ingest").service, file_chunks(data),
                                                      "jsonl", None))
        accepted: int | None = None
        deadline = time.monotonic() + timeout
        with console.status("importing") as status:
            while not all(name in reached for name in STAGES):
                await asyncio.sleep(0.5)
                if importing.done() and accepted is None:
                    summary = importing.result()
                    accepted = summary["accepted"] + summary["withdrawn"]
                    reached.setdefault("import", time.perf_counter() - started)
                counts = await stage_counts(runtime)
                now = time.perf_counter() - started
                for name in STAGES:
                    if accepted is not None and name not in reached and counts[name] >= accepted:
                        reached[name] = now
                status.update(f"{now:6.0f} s  " + "  ".join(f"{n} {counts[n]:,}" for n in STAGES))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {timeout:.0f} s: {counts} of {accepted}")
        while not await pipeline_idle(runtime):  # review's re-announcements may still be in flight
            await asyncio.sleep(0.5)
        idle = time.perf_counter() - started
        from services.pricer.repository import results as priced
        async with runtime.engine.connect() as conn:
            statuses: dict[str, int] = dict((await conn.execute(
                select(priced.c.status, func.count()).group_by(priced.c.status))).all())
    finally:
        await runtime.stop()

    assert accepted is not None
    print(f"imported {summary['lines']:,} lists: {summary['accepted']:,} accepted, "
          f"{summary['rejected']:,} rejected by QC, {summary['duplicate']:,} duplicates")
    print("priced: " + ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items())))
    print(f"{'stage':<10}{'done after s':>14}{'cases/s':>12}")
    print(f"{'import':<10}{reached['import']:>14.1f}{summary['lines'] / reached['import']:>12,.0f}  (lists stored and checked)")
    for name in STAGES:
        print(f"{name:<10}{reached[name]:>14.1f}{accepted / reached[name]:>12,.0f}")
    print(f"{'overall':<10}{idle:>14.1f}{accepted / idle:>12,.0f}  (until the pipeline is idle)")


def main(argv: list[str] | None = None) -> int:
    default_shared = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", type=int, default=20_000, help="settlement lists to generate and import")
    p.add_argument("--hospitals", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scheme-path", type=Path, default=None,
                   help="one scheme folder (default: <shared>/schemes/chs-drg-1.1)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds before giving up")
    args = p.parse_args(argv)
    option = args.scheme_path or default_shared / "schemes" / "chs-drg-1.1"
    scheme_path, _sample = resolve_scheme(option, Console(stderr=True))
    with tempfile.TemporaryDirectory(prefix="drgdip-bench-") as tmp:
        asyncio.run(run(scheme_path, args.cases, args.hospitals, args.seed, Path(tmp), args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
