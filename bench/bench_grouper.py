"""Grouping throughput on one core.

Loads a scheme (prints the load time), resamples the scheme's oracle cases with
replacement (seeded) up to N cases, groups them in-process in raw mode without trace and
prints cases per second; then one trace-mode figure on a smaller sample.

    .venv/bin/python bench/bench_grouper.py [--shared PATH] [--cases 100000] [--scheme chs-drg-1.1]

The shared data folder defaults to $DRGDIP_SHARED, else <repo>/../shared.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from services.grouper.domain import GroupStatus, load_scheme  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    default_shared = os.environ.get("DRGDIP_SHARED", str(REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=default_shared, help="shared data folder")
    p.add_argument("--cases", type=int, default=100_000, help="cases to group")
    p.add_argument("--scheme", default="chs-drg-1.1", help="scheme id under <shared>/schemes")
    p.add_argument("--trace-cases", type=int, default=10_000, help="cases for the trace figure")
    p.add_argument("--seed", type=int, default=20240101)
    args = p.parse_args(argv)

    shared = Path(args.shared)
    started = time.perf_counter()
    scheme = load_scheme(shared / "schemes" / args.scheme)
    print(f"scheme {scheme.id}: loaded in {time.perf_counter() - started:.3f} s")

    with (shared / "testdata" / f"{args.scheme}-cases.jsonl").open("rb") as fh:
        pool = [orjson.loads(line) for line in fh if line.strip()]
    rng = random.Random(args.seed)
    cases = rng.choices(pool, k=args.cases)

    group = scheme.grouper("raw")
    group(cases[0])  # warm-up
    started = time.perf_counter()
    grouped = 0
    for c in cases:
        if group(c).status is GroupStatus.SUCCESS:
            grouped += 1
    elapsed = time.perf_counter() - started
    print(
        f"raw, no trace: {len(cases):,} cases in {elapsed:.3f} s = "
        f"{len(cases) / elapsed:,.0f} cases/s (grouped {grouped / len(cases):.1%})"
    )

    sample = cases[: args.trace_cases]
    started = time.perf_counter()
    for c in sample:
        scheme.group(c, trace=True)
    elapsed = time.perf_counter() - started
    print(f"raw, trace: {len(sample):,} cases in {elapsed:.3f} s = {len(sample) / elapsed:,.0f} cases/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
