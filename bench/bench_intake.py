"""Bulk intake speed: lists/s through ingest (stored verbatim, validated, case-received published).

    .venv/bin/python bench/bench_intake.py [--shared ../shared] [--lists 100000]

Generates a synthetic region (seeded) into a JSON Lines file, then imports it into an embedded
ingest (SQLite, in-process bus) and waits until every accepted list's event is published.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent


async def run(shared: Path, n: int, workdir: Path) -> None:
    from drgdip.generate import generate_region
    from drgdip.stages import build_runtime
    from services.ingest.handlers import file_chunks, import_stream
    from shared.events import CASE_RECEIVED

    scheme = shared / "schemes" / "chs-drg-1.1"
    data = workdir / "region.jsonl"
    t = time.perf_counter()
    with data.open("wb") as fh:
        for sl in generate_region(scheme, hospitals=30, cases=n, seed=11):
            fh.write(orjson.dumps(sl) + b"\n")
    print(f"generated {n} lists in {time.perf_counter() - t:.1f} s")

    rt = build_runtime("ingest", db=f"sqlite+aiosqlite:///{workdir / 'ingest.db'}",
                       dictionary_scheme=scheme, log_level="WARNING")
    await rt.start()
    try:
        stage = rt.stages[0]
        intake = stage.service
        t, cpu = time.perf_counter(), time.process_time()
        summary = await import_stream(intake, file_chunks(data), "jsonl", None)
        stored = time.perf_counter() - t
        while len(rt.bus.log(CASE_RECEIVED)) < summary["accepted"]:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        total = time.perf_counter() - t
        cpu = time.process_time() - cpu  # all threads (SQLite runs in aiosqlite's): less noisy than wall time
    finally:
        await rt.stop()
    print(f"imported {summary['lines']} lists: {summary['accepted']} accepted, {summary['rejected']} rejected")
    print(f"stored + validated: {stored:.1f} s ({summary['lines'] / stored:,.0f} lists/s)")
    print(f"through ingest incl. case-received published: {total:.1f} s ({summary['lines'] / total:,.0f} lists/s)")
    print(f"CPU time: {cpu:.1f} s ({cpu / summary['lines'] * 1e6:,.0f} µs per list)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")))
    p.add_argument("--lists", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.shared.resolve(), args.lists, Path(tmp)))


if __name__ == "__main__":
    main()
