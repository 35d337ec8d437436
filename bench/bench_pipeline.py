"""End-to-end throughput of the embedded pipeline: cases/s per stage and overall.

    .venv/bin/python bench/bench_pipeline.py [--cases 20000] [--hospitals 20] [--scheme-path DIR]

Generates a synthetic region (3 years, seeded) into a JSON Lines file, calibrates weights on it
with the pure core and imports a point-method policy for each of the three years (so that every
case of the region is priced for real), starts all five stages in one process (in-process bus,
one SQLite file, as `drgdip demo`), bulk-imports the file through ingest's `Intake` and follows
each stage on the in-process bus. A stage's time is from the start of the import until it has
applied every accepted case (ingest: a `case-received` published for each; the grouper, the
pricer, review and the gateway: their group's committed offset on `case-received`,
`case-grouped`, `case-priced` and `case-flagged`, as they commit after their transaction); its
rate is accepted cases / that time. The stages overlap, so each figure is the pipeline's rate up
to that stage. The bench reads no table while the pipeline runs (counting rows every half second
would hold the one SQLite connection for longer and longer as the tables grow); once the
pipeline is idle, each stage's table is counted once and must hold every accepted case
(ingest_lists, grouper_results, pricer_results, review_results; for the gateway, read-model
rows reviewed or withdrawn).

The scheme folder defaults to $DRGDIP_SCHEME_PATH, else <shared>/schemes/chs-drg-1.1 with
<shared> = $DRGDIP_SHARED or <repo>/../shared.

It also prints the CPU each stage spends per case (µs, every thread of the process: the stage's
event-loop steps, its thread-pool work and its SQLite calls, of which the SQLite part apart; see
`StageClock`), the whole process's CPU per case, the peak resident memory and the load average
(the development machine is shared: CPU per case carries over between runs, wall time does
not). The figures go to bench/results/pipeline.json (the last run of each size), from which
the README's throughput table is written.

Then (unless `--import-only`) the two paths a bureau runs over stored history, each with the
pipeline running and timed until it is idle again: **re-pricing** (a second version of every
year's policy with another point value, then `reprice` of the region: every case gets a new
price version, reviewed and folded again) and **regrouping** (`regroup` of every stored case
with the scheme: a new grouping version each, priced, reviewed and folded again). For each the
bench prints cases/s and the CPU per case by stage, as for the import.

The 200,000-case run (`--cases 200000`) is the figure to quote for a prefecture-sized region:
run it before a release. `bench_cores.py` gives the floor of the one-process pipeline: what the
pure cores alone cost per case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import resource
import sys
import tempfile
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from drgdip.demo import (  # noqa: E402
    REGION,
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
from shared.bus.memory import MemoryBus  # noqa: E402
from shared.events import CASE_FLAGGED, CASE_GROUPED, CASE_PRICED, CASE_RECEIVED  # noqa: E402
from shared.runtime import Runtime  # noqa: E402

STAGES = ("ingest", "grouper", "pricer", "review", "gateway")
RESULTS = REPO / "bench" / "results" / "pipeline.json"
RUNTIME = "runtime"  # the rest of the process: the event loop's own work, the bench's polling
STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("bench_stage", default=RUNTIME)


class StageClock:
    """The CPU each stage spends, measured, not sampled: the thread CPU time of every event-loop
    callback (a step of a stage's task), of every function run in the thread pool
    (`asyncio.to_thread`: decoding, grouping, pricing ...) and of every SQLite call on the
    driver's thread, each given to the stage whose task caused it (a context variable set on
    each consumer's and relay's task and on the import; `to_thread` and the driver calls inherit
    or capture it). Installed for the bench only; costs two clock reads per callback."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.sql: dict[str, float] = {}
        self._lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any]] = []

    def _add(self, into: dict[str, float], stage: str, spent: float) -> None:
        with self._lock:
            into[stage] = into.get(stage, 0.0) + spent

    def install(self, runtime: Runtime) -> None:
        import concurrent.futures.thread as pool

        import aiosqlite.core

        clock = time.thread_time
        handle_run, item_run = asyncio.events.Handle._run, pool._WorkItem.run
        execute = aiosqlite.core.Connection._execute

        def timed_handle(handle: Any) -> None:
            t = clock()
            try:
                handle_run(handle)
            finally:
                self._add(self.cpu, handle._context.get(STAGE), clock() - t)

        def timed_item(item: Any) -> None:
            ctx = getattr(getattr(item.fn, "func", None), "__self__", None)  # to_thread: partial(ctx.run, f)
            stage = ctx.get(STAGE, RUNTIME) if isinstance(ctx, contextvars.Context) else RUNTIME
            t = clock()
            try:
                item_run(item)
            finally:
                self._add(self.cpu, stage, clock() - t)

        async def timed_execute(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            stage = STAGE.get()

            def call() -> Any:
                t = clock()
                try:
                    return fn(*args, **kwargs)
                finally:
                    spent = clock() - t
                    self._add(self.cpu, stage, spent)
                    self._add(self.sql, stage, spent)

            return await execute(conn, call)

        for owner, name, new in ((asyncio.events.Handle, "_run", timed_handle), (pool._WorkItem, "run", timed_item),
                                 (aiosqlite.core.Connection, "_execute", timed_execute)):
            self._undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, new)
        for c in runtime.consumers:
            c.run = _tagged(c.service, c.run)  # type: ignore[method-assign]
        for r in runtime.relays:
            r.run = _tagged(r.outbox.table.name.removesuffix("_outbox"), r.run)  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for owner, name, old in reversed(self._undo):
            setattr(owner, name, old)
        self._undo.clear()


def _tagged(stage: str, run: Any) -> Any:
    async def tagged() -> None:
        STAGE.set(stage)
        await run()
    return tagged


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


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


# what each stage consumes to apply a case: (its input topic); ingest publishes case-received
APPLIES = {"grouper": CASE_RECEIVED, "pricer": CASE_GROUPED, "review": CASE_PRICED, "gateway": CASE_FLAGGED}


def stage_progress(runtime: Runtime) -> dict[str, int]:
    """Cases each stage has applied, by the in-process bus's offsets (no SQL: see the docstring)."""
    bus = runtime.bus
    assert isinstance(bus, MemoryBus)
    # a stage's consumer group is its name (no namespace in the embedded mode)
    return {"ingest": bus.end(CASE_RECEIVED),
            **{name: bus.committed(name, topic) for name, topic in APPLIES.items()}}


class Measured:
    """CPU and wall time of one phase of the run, by stage (the StageClock cleared at its start)."""

    def __init__(self, clock: StageClock) -> None:
        self.clock = clock
        clock.cpu.clear()
        clock.sql.clear()
        self.cpu_before, self.started = _cpu(), time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def figures(self, cases: int, seconds: float) -> dict[str, Any]:
        cpu = _cpu() - self.cpu_before
        stages = {name: self.clock.cpu.get(name, 0.0) for name in STAGES}
        stages[RUNTIME] = cpu - sum(stages.values())  # the event loop's own work, the bench's polling
        return {"cases": cases, "seconds": round(seconds, 1), "cases_per_s": round(cases / seconds),
                "cpu_s": round(cpu, 1), "cpu_us_per_case": round(cpu / cases * 1e6),
                "cpu_us_per_case_by_stage": {k: round(v / cases * 1e6) for k, v in stages.items()},
                "sqlite_us_per_case_by_stage": {k: round(self.clock.sql.get(k, 0.0) / cases * 1e6)
                                                for k in stages},
                "cases_per_cpu_s": round(cases / cpu)}


def in_stage(name: str, work: Any) -> asyncio.Task[Any]:
    """Run `work` (a coroutine) as a task whose CPU counts for stage `name`."""
    ctx = contextvars.copy_context()
    ctx.run(STAGE.set, name)
    return asyncio.create_task(work, context=ctx)


async def until_idle(runtime: Runtime, status: Any, what: str, started: float, timeout: float) -> float:
    """Seconds from `started` until every event is consumed and every outbox empty."""
    deadline = time.monotonic() + timeout
    while not await pipeline_idle(runtime):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: the pipeline was not idle after {timeout:.0f} s")
        status.update(f"{what}: {time.perf_counter() - started:6.0f} s, waiting for the pipeline")
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def run(scheme_path: Path, cases: int, hospitals: int, seed: int, workdir: Path, timeout: float,
              results: Path | None, history_paths: bool = True) -> None:
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

    from services.grouper.handlers import regroup
    from services.ingest.handlers import file_chunks, import_stream
    from services.pricer.handlers import reprice
    from services.pricer.repository import Policies

    runtime = embedded_runtime(scheme, scheme_path, workdir / "drgdip.db")
    clock = StageClock()
    clock.install(runtime)
    await runtime.start()
    async with runtime.engine.begin() as conn:
        for policy in policies:
            await import_policy(conn, orjson.dumps(policy.to_document()), who="bench")
    reached: dict[str, float] = {}
    load_before = _load()
    paths: dict[str, dict[str, Any]] = {}
    try:
        measured = Measured(clock)
        started = measured.started
        importing = in_stage("ingest", import_stream(stage(runtime, "ingest").service, file_chunks(data),
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
                counts = stage_progress(runtime)
                now = time.perf_counter() - started
                for name in STAGES:
                    if accepted is not None and name not in reached and counts[name] >= accepted:
                        reached[name] = now
                status.update(f"{now:6.0f} s  " + "  ".join(f"{n} {counts[n]:,}" for n in STAGES))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {timeout:.0f} s: {counts} of {accepted}")
            # review's re-announcements may still be in flight
            idle = await until_idle(runtime, status, "import", started, timeout)
        assert accepted is not None
        stored = await stage_counts(runtime)
        if any(n != accepted for n in stored.values()):
            raise RuntimeError(f"stored rows per stage {stored}, not {accepted:,} each")
        imported = measured.figures(accepted, idle)
        from services.pricer.repository import results as priced
        async with runtime.engine.connect() as conn:
            statuses: dict[str, int] = dict((await conn.execute(
                select(priced.c.status, func.count()).group_by(priced.c.status))).all())

        if history_paths:
            # re-pricing: a second version of each year's policy (another point value), then the region
            async with runtime.engine.begin() as conn:
                for policy in policies:
                    doc = policy.with_point_value(Decimal("11")).to_document()
                    await import_policy(conn, orjson.dumps({**doc, "version": policy.version + 1}), who="bench")
            with console.status("re-pricing") as status:
                measured = Measured(clock)
                pricer = stage(runtime, "pricer")
                repricing = await in_stage("pricer", reprice(
                    runtime.engine, pricer.outbox, Policies(), REGION,
                    progress=lambda done, total: status.update(f"re-pricing: {done:,} of {total:,} stored")))
                paths["reprice"] = measured.figures(
                    repricing.repriced, await until_idle(runtime, status, "re-pricing", measured.started, timeout))
            with console.status("regrouping") as status:
                measured = Measured(clock)
                grouper = stage(runtime, "grouper")
                migration = await in_stage("grouper", regroup(
                    runtime.engine, grouper.outbox, scheme,
                    progress=lambda done, total: status.update(f"regrouping: {done:,} of {total:,} stored")))
                paths["regroup"] = measured.figures(
                    migration.cases, await until_idle(runtime, status, "regrouping", measured.started, timeout))
    finally:
        await runtime.stop()
        clock.uninstall()

    cores = len(os.sched_getaffinity(0))
    print(f"imported {summary['lines']:,} lists: {summary['accepted']:,} accepted, "
          f"{summary['rejected']:,} rejected by QC, {summary['duplicate']:,} duplicates")
    print("priced: " + ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items())))
    print(f"{'stage':<10}{'done after s':>14}{'cases/s':>12}")
    print(f"{'import':<10}{reached['import']:>14.1f}{summary['lines'] / reached['import']:>12,.0f}  (lists stored and checked)")
    for name in STAGES:
        print(f"{name:<10}{reached[name]:>14.1f}{accepted / reached[name]:>12,.0f}")
    print(f"{'overall':<10}{idle:>14.1f}{accepted / idle:>12,.0f}  (until the pipeline is idle)")
    print(f"CPU per case, µs (every thread; {cores} cores, load {load_before} at the start, "
          f"{_load()} at the end):")
    print_cpu({"import": imported, **paths})
    for name, figures in paths.items():
        print(f"{name}: {figures['cases']:,} cases in {figures['seconds']:.1f} s: "
              f"{figures['cases_per_s']:,} cases/s until the pipeline is idle")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mb:,.0f} MB")
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "date": date.today().isoformat(), "cases": cases, "accepted": accepted, "scheme": scheme_path.name,
            "cores": cores, "load_average_at_start": load_before, "load_average_at_end": _load(),
            "python": sys.version.split()[0],
            **{k: v for k, v in imported.items() if k != "cases"},
            "stage_done_after_s": {name: round(reached[name], 1) for name in ("import", *STAGES)},
            "peak_rss_mb": round(peak_mb), **paths}
        runs = json.loads(results.read_text()) if results.exists() else {}
        runs[str(cases)] = record  # the last run of each size
        results.write_text(json.dumps(runs, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {results}")


def print_cpu(phases: dict[str, dict[str, Any]]) -> None:
    """CPU µs per case by stage, one column per phase (total and its SQLite part)."""
    print(f"  {'stage':<10}" + "".join(f"{name + ' (SQLite)':>22}" for name in phases))
    for stage_name in (*STAGES, RUNTIME):
        print(f"  {stage_name:<10}" + "".join(
            f"{f['cpu_us_per_case_by_stage'][stage_name]:>14,} ({f['sqlite_us_per_case_by_stage'][stage_name]:>5,})"
            for f in phases.values()))
    print(f"  {'overall':<10}" + "".join(f"{f['cpu_us_per_case']:>22,}" for f in phases.values()))
    for name, f in phases.items():
        print(f"  {name}: {f['cpu_s']:.1f} s of CPU over {f['seconds']:.1f} s: "
              f"{f['cases_per_cpu_s']:,} cases per CPU-second")


def readme_table(results: Path) -> str:
    """The README's throughput table, from the figures of the last runs (`--table`)."""
    runs = json.loads(results.read_text())
    head = ["lists", "date", "cases/s", "CPU µs/case", *STAGES, RUNTIME, "peak MB", "load avg (1/5/15 min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in sorted(runs, key=int):
        r = runs[size]
        by = r["cpu_us_per_case_by_stage"]
        lines.append("| " + " | ".join([
            f"{int(size):,}", r["date"], f"{r['cases_per_s']:,}", f"{r['cpu_us_per_case']:,}",
            *(str(by[s]) for s in (*STAGES, RUNTIME)), f"{r['peak_rss_mb']:,}",
            r["load_average_at_start"].replace(" ", " / ")]) + " |")
    paths = [(size, name, runs[size][name]) for size in sorted(runs, key=int)
             for name in ("reprice", "regroup") if name in runs[size]]
    if paths:
        head = ["lists", "path", "cases", "cases/s", "CPU µs/case", *STAGES, RUNTIME]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for size, name, f in paths:
            by = f["cpu_us_per_case_by_stage"]
            lines.append("| " + " | ".join([
                f"{int(size):,}", {"reprice": "re-pricing", "regroup": "regrouping"}[name], f"{f['cases']:,}",
                f"{f['cases_per_s']:,}", f"{f['cpu_us_per_case']:,}", *(str(by[s]) for s in (*STAGES, RUNTIME))]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    default_shared = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", type=int, default=20_000, help="settlement lists to generate and import")
    p.add_argument("--hospitals", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scheme-path", type=Path, default=None,
                   help="one scheme folder (default: <shared>/schemes/chs-drg-1.1)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds before giving up")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="JSON file keeping the last run's figures per size (the README table's source)")
    p.add_argument("--no-results", action="store_true", help="print only, write no figures")
    p.add_argument("--import-only", action="store_true",
                   help="skip the re-pricing and regrouping of the stored history after the import")
    p.add_argument("--table", action="store_true", help="print the README table from --results and exit")
    args = p.parse_args(argv)
    if args.table:
        print(readme_table(args.results))
        return 0
    option = args.scheme_path or default_shared / "schemes" / "chs-drg-1.1"
    scheme_path, _sample = resolve_scheme(option, Console(stderr=True))
    with tempfile.TemporaryDirectory(prefix="drgdip-bench-") as tmp:
        asyncio.run(run(scheme_path, args.cases, args.hospitals, args.seed, Path(tmp), args.timeout,
                        None if args.no_results else args.results, not args.import_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
