"""What one case costs in each stage's pure core, without database, bus or events around it.

    .venv/bin/python bench/bench_cores.py [--cases 10000] [--scheme-path DIR]

Generates a synthetic region (as `bench_pipeline.py`), then times, per case, on one core:
ingest's decision (parse, QC with the scheme's dictionaries, case fields), the `case-received`
payload, grouping with the CC/MCC lift (the trace is not computed in the pipeline: its cost,
when a route asks for it, is printed apart), and pricing under calibrated point policies
(the pricer's `case-priced` payload included). Their sum is the floor of what the
embedded pipeline, which runs every stage in one Python process, spends per case before it
stores or announces anything; 1 / floor bounds its throughput.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402

from drgdip.demo import REGION, YEAR_WEIGHTS, YEARS, points_policy, resolve_scheme  # noqa: E402
from drgdip.generate import RegionGenerator  # noqa: E402
from services.grouper.domain import cc_lift, engine_input, load_scheme  # noqa: E402
from services.ingest.domain import intake, qc  # noqa: E402
from services.pricer.domain.calibration import CalibrationParams, HistoricalCase, calibrate  # noqa: E402
from services.pricer.domain.grouped import price_grouped  # noqa: E402
from shared.events import CaseGrouped  # noqa: E402
from shared.periods import InForce  # noqa: E402


def timed(items: Sequence[Any], work: Callable[[Any], Any]) -> tuple[list[Any], float]:
    """`work` applied to each item, and the seconds per item."""
    started = time.perf_counter()
    out = [work(x) for x in items]
    return out, (time.perf_counter() - started) / max(len(items), 1)


def run(scheme_path: Path, cases: int, hospitals: int, seed: int) -> None:
    scheme = load_scheme(scheme_path)
    dictionaries = qc.load_dictionaries(scheme_path)
    gen = RegionGenerator(scheme, hospitals=hospitals, cases=cases, seed=seed, years=YEARS)
    raw = [orjson.dumps(sl) for sl in gen]
    costs: dict[str, float] = {}

    decisions, costs["ingest: parse, QC, case fields"] = timed(
        raw, lambda r: intake.evaluate("native", orjson.loads(r), caller_hospital=None, dictionaries=dictionaries))
    accepted = [d for d in decisions if isinstance(d, intake.Accepted)]
    received, costs["ingest: case-received payload"] = timed(accepted, lambda d: intake.case_received(
        d.fields, list_version=1, psn_key=intake.person_key(d.fields.psn_no, "bench"),
        treatment_region=d.treatment_region))
    def group(p: Any) -> Any:
        case = engine_input(p)
        g = scheme.group(case, code_mode="raw")
        cc_lift(scheme, case, g, code_mode="raw")
        return g

    grouped, costs["grouper: group, CC/MCC lift"] = timed(received, group)
    # the trace is recomputed only when asked for (GET /cases/{id}/grouping): not in the floor
    traced, trace_cost = timed(received, lambda p: scheme.group(engine_input(p), code_mode="raw", trace=True))
    _, trace_json = timed(traced, lambda g: g.trace.to_json())

    history = [HistoricalCase(case_id=str(i), year=p.facts.discharge_date.year, drg=g.drg,
                              cost=p.facts.total_cost, los=p.los, hospital_code=p.facts.hospital_code)
               for i, (p, g) in enumerate(zip(received, grouped, strict=True))]
    calibration = calibrate(history, CalibrationParams(region=REGION, year=gen.end_year + 1,
                                                       year_weights=YEAR_WEIGHTS))
    policies = InForce([(p.region, p.valid_from, p.valid_to, p.version, p) for p in (
        points_policy(scheme, calibration, gen.hospitals, year, Decimal("10"))
        for year in range(gen.end_year - YEARS + 1, gen.end_year + 1))])
    events = [CaseGrouped(facts=p.facts, scheme_id=scheme.id, mdc=g.mdc, adrg=g.adrg, drg=g.drg,
                          status=g.status) for p, g in zip(received, grouped, strict=True)]
    _, costs["pricer: price, case-priced payload"] = timed(
        list(enumerate(events)), lambda ie: price_grouped(str(ie[0]), ie[1], policies, InForce([])))

    print(f"{len(raw):,} generated lists ({scheme.id}), {len(accepted):,} accepted; microseconds per case:")
    for name, seconds in costs.items():
        print(f"  {name:<42}{seconds * 1e6:>8.0f}")
    floor = sum(costs.values())
    print(f"  {'floor (sum)':<42}{floor * 1e6:>8.0f}   -> at most {1 / floor:,.0f} cases/s in one process")
    print(f"  {'(a trace, when asked: grouping traced + JSON)':<42}{(trace_cost + trace_json) * 1e6:>8.0f}")


def main(argv: list[str] | None = None) -> int:
    default_shared = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--hospitals", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scheme-path", type=Path, default=None,
                   help="one scheme folder (default: <shared>/schemes/chs-drg-1.1)")
    args = p.parse_args(argv)
    option = args.scheme_path or default_shared / "schemes" / "chs-drg-1.1"
    scheme_path, _sample = resolve_scheme(option, Console(stderr=True))
    run(scheme_path, args.cases, args.hospitals, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
