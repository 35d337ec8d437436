"""Precision and recall of each review rule on a seeded synthetic region.

    .venv/bin/python bench/bench_review_rules.py [--cases 8000] [--hospitals 20] [--rate 0.02]

Generates a region with every case-level pattern seeded at `--rate` of the cases
(`drgdip generate --abuse-rate`: split admissions, upcoding, low-standard admissions, cost
shifting, and planned chemotherapy readmission pairs as true negatives) and two episodes of
each hospital-level pattern (a hospital's quarter: upcoding, refusing severe patients,
under-service), prices it through the embedded pipeline with calibrated point-method policies
(every case priced, as `bench_pipeline.py`), runs the hospital-level rules for every quarter
and compares review's open flags with the ground truth (`drgdip/review_truth.py`). A true
positive is a flagged case (hospital rules: a hospital's quarter) seeded for the rule; flags
on others are "unseeded flags" (organic cases may fire a rule legitimately), so precision is a
lower bound on the rule's real precision. The seeded cases a rule missed are counted by reason
where the figures tell it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from drgdip.demo import resolve_scheme  # noqa: E402
from drgdip.review_truth import HOSPITAL_RULES, RegionRun, RuleScore, run_region, score, table  # noqa: E402
from services.review.domain.parameters import RuleParameters  # noqa: E402


def why_missed(run: RegionRun, s: RuleScore) -> Counter[str]:
    """Why each missed seeded case was not flagged, as far as review's stored figures say."""
    p = RuleParameters()
    out: Counter[str] = Counter()
    # cases of each group discharged before a case: review meets them first (lists arrive in
    # discharge order), so they are the group's regional figures when the case is reviewed
    by_group: dict[str, list[str]] = {}
    by_adrg: dict[str, list[str]] = {}  # cost shifting falls back to the ADRG's share
    for f in run.figures.values():
        by_group.setdefault(f["drg"], []).append(f.get("discharge_date") or "")
        by_adrg.setdefault(f["drg"][:3], []).append(f.get("discharge_date") or "")
    for days in (*by_group.values(), *by_adrg.values()):
        days.sort()
    n = p.cost_shifting.min_cases
    for cid in s.missed:
        if s.rule in HOSPITAL_RULES:
            out["the rule did not fire for the hospital's quarter"] += 1
            continue
        found = run.figures.get(cid)
        if found is None:
            out["no figures (not priced)"] += 1
            continue
        f = found
        mean = Decimal(f["group_mean_cost"]) if f.get("group_mean_cost") else None
        cost = Decimal(f["total_cost"]) if f.get("total_cost") else None
        day = f.get("discharge_date") or ""
        earlier = bisect.bisect_left(by_group.get(f["drg"], []), day)
        earlier_adrg = bisect.bisect_left(by_adrg.get(f["drg"][:3], []), day)
        if s.rule == "COST_SHIFTING" and run.group_cases.get(f"drg|{f['drg']}", 0) <= n \
                and run.group_cases.get(f"drg|adrg:{f['drg'][:3]}", 0) <= n:
            out[f"group and its ADRG have ≤ {n} cases in the region"] += 1
        elif s.rule == "COST_SHIFTING" and earlier < n and earlier_adrg < n:
            out[f"fewer than {n} cases of its group and of its ADRG discharged before it"] += 1
        elif s.rule == "LOW_STANDARD_ADMISSION" and mean is None:
            out["no group mean in the policy"] += 1
        elif s.rule == "LOW_STANDARD_ADMISSION" and cost is not None and mean is not None \
                and cost >= p.low_standard_admission.cost_ratio * mean:
            out[f"cost ≥ {p.low_standard_admission.cost_ratio} × the calibrated group mean"] += 1
        else:
            out["other"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    default_shared = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cases", type=int, default=8000, help="settlement lists to generate")
    ap.add_argument("--hospitals", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.02, help="share of cases seeded per pattern")
    ap.add_argument("--scheme-path", type=Path, default=None,
                    help="one scheme folder (default: <shared>/schemes/chs-drg-1.1)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before giving up")
    args = ap.parse_args(argv)
    scheme_path, _sample = resolve_scheme(args.scheme_path or default_shared / "schemes" / "chs-drg-1.1",
                                          Console(stderr=True))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="drgdip-bench-") as tmp:
        run = asyncio.run(run_region(scheme_path, Path(tmp), cases=args.cases, hospitals=args.hospitals,
                                     seed=args.seed, rate=args.rate, timeout=args.timeout))
    scores = score(run.truth, run.flagged, run.accepted)
    print(f"{date.today().isoformat()}: {run.lists:,} lists ({scheme_path.name}, {args.hospitals} hospitals, "
          f"seed {args.seed}, each pattern at {args.rate:.1%}), {len(run.accepted):,} accepted, "
          f"{run.rejected:,} rejected by QC; {time.perf_counter() - started:.0f} s")
    print(table(scores))
    for s in scores:
        if s.missed:
            reasons = ", ".join(f"{n} {why}" for why, n in why_missed(run, s).most_common())
            print(f"{s.rule}: {len(s.missed)} seeded cases not flagged: {reasons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
