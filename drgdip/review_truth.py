"""The review rules measured against the synthetic region's ground truth (`drgdip generate
--abuse-rate`, `<output>.truth.jsonl`): precision and recall per rule.

`run_region` generates a seeded region, calibrates it and prices it for real through the
embedded pipeline (as `bench/bench_pipeline.py`), and returns the truth rows with the open flags
review raised; `score` compares them. A true positive is a flagged case seeded for that rule;
flags on cases not seeded for the rule are counted apart as "unseeded" (organic cases may fire
a rule legitimately: a short stay that is cheap, a seeded upcoding case that is also a
low-standard admission). Recall counts only seeded cases intake accepted.

Hospital-level rules (HOSPITAL_UPCODING, REFUSING_SEVERE, UNDER_SERVICE) are scored the same
way per (hospital, quarter): the generator seeds a few episodes (`RegionGenerator.episodes`),
their truth rows' `case_id` is "<hospital>|<quarter>", and the rules are run for every quarter
of the region (as `drgdip review run --period YYYYQn`); a flag on another hospital's quarter
is an unseeded flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from drgdip.generate import GroundTruth, PatternRates, RegionGenerator, episode_truth

CASE_RULES = ("SPLIT_ADMISSION", "UPCODING_SECONDARY", "LOW_STANDARD_ADMISSION", "COST_SHIFTING",
              "PRIMARY_CARE_AT_TERTIARY")
# Hospital-level rules: truth rows and flags keyed "<hospital>|<quarter>"
HOSPITAL_RULES = ("HOSPITAL_UPCODING", "REFUSING_SEVERE", "UNDER_SERVICE")



@dataclass(frozen=True)
class RuleScore:
    rule: str
    seeded: int  # seeded cases intake accepted (hospital rules: seeded hospital-quarters)
    flagged: int  # cases the rule flagged (hospital rules: hospital-quarters)
    true_positives: int
    negatives: int  # true-negative rows (planned chemotherapy readmissions) accepted
    false_on_negatives: int  # of those, flagged
    missed: tuple[str, ...]  # seeded, accepted, not flagged

    @property
    def unseeded(self) -> int:
        return self.flagged - self.true_positives

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.seeded if self.seeded else None


def score(truth: Iterable[Mapping[str, Any]], flagged: Mapping[str, set[str]],
          accepted: set[str], rules: Iterable[str] = CASE_RULES + HOSPITAL_RULES) -> list[RuleScore]:
    """Per rule: `truth` rows (GroundTruth), `flagged` case ids per rule, `accepted` case ids."""
    rows = list(truth)
    out = []
    for rule in rules:
        pos = {r["case_id"] for r in rows if r["rule"] == rule and r["seeded"] and r["case_id"] in accepted}
        neg = {r["case_id"] for r in rows if r["rule"] == rule and not r["seeded"] and r["case_id"] in accepted}
        got = flagged.get(rule, set())
        out.append(RuleScore(rule, len(pos), len(got), len(pos & got), len(neg), len(neg & got),
                             tuple(sorted(pos - got))))
    return out


def table(scores: Iterable[RuleScore]) -> str:
    """The scores as a Markdown table (what the README shows)."""
    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    lines = ["| rule | seeded | flagged | true positives | unseeded flags | precision | recall "
             "| true negatives flagged |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in scores:
        neg = f"{s.false_on_negatives} of {s.negatives}" if s.negatives else "–"
        lines.append(f"| `{s.rule}` | {s.seeded} | {s.flagged} | {s.true_positives} | {s.unseeded} "
                     f"| {pct(s.precision)} | {pct(s.recall)} | {neg} |")
    return "\n".join(lines)


@dataclass
class RegionRun:
    truth: list[dict[str, Any]]
    accepted: set[str]
    flagged: dict[str, set[str]]
    lists: int
    rejected: int
    figures: dict[str, dict[str, Any]]  # review's figures of every priced case (case id -> CaseData JSON)
    group_cases: dict[str, int]  # cases per group in review's self-pay shares at the end ("drg|G")


async def run_region(scheme_path: Path, workdir: Path, *, cases: int, hospitals: int, seed: int,
                     rate: float, timeout: float = 3600) -> RegionRun:
    """Generate a region seeded at `rate`, price it (calibrated point-method policies for each
    year, so every case is priced) through the embedded pipeline and collect review's flags."""
    from sqlalchemy import select

    from drgdip.demo import YEARS, embedded_runtime, region_policies, stage, wait_idle, write_region
    from services.grouper.domain import load_scheme
    from services.ingest.handlers import file_chunks, import_stream
    from services.ingest.repository import lists as ingested
    from services.pricer.handlers import import_policy
    from services.review.handlers import run_hospital_rules
    from services.review.repository import all_case_figures, group_shares
    from services.review.repository import flags as review_flags

    scheme = load_scheme(scheme_path)
    gen = RegionGenerator(scheme, hospitals=hospitals, cases=cases, seed=seed, years=YEARS,
                          rates=PatternRates.abuse(rate))
    gt, truth = GroundTruth(), []
    data = workdir / "region.jsonl"
    history = write_region(gen, data, each=lambda sl: truth.extend(gt.rows(sl)))
    policies = region_policies(gen, history)
    runtime = embedded_runtime(scheme, scheme_path, workdir / "drgdip.db")
    await runtime.start()
    try:
        async with runtime.engine.begin() as conn:
            for policy in policies:
                await import_policy(conn, orjson.dumps(policy.to_document()), who="bench")
        summary = await import_stream(stage(runtime, "ingest").service, file_chunks(data), "jsonl", None)
        await wait_idle(runtime, timeout)
        quarters = [f"{year}Q{q}" for year in range(gen.end_year - gen.years + 1, gen.end_year + 1)
                    for q in range(1, 5)]
        async with runtime.engine.begin() as conn:  # the hospital-level rules, every quarter
            for quarter in quarters:
                await run_hospital_rules(conn, quarter, trigger="bench")
            accepted = {cid for (cid,) in await conn.execute(select(ingested.c.case_id))}
            flagged: dict[str, set[str]] = {}
            f = review_flags.c
            for cid, rule, level, hospital, period in await conn.execute(
                    select(f.case_id, f.rule, f.level, f.hospital_code, f.period).where(f.status == "open")):
                flagged.setdefault(rule, set()).add(cid if level == "case" else f"{hospital}|{period}")
            figures = await all_case_figures(conn)
            group_cases = {key.split("|", 1)[1]: int(n) for key, n in await conn.execute(
                select(group_shares.c.share_key, group_shares.c.cases))}
    finally:
        await runtime.stop()
    truth += episode_truth(gen.episodes)
    accepted |= {f"{h.code}|{q}" for h in gen.hospitals for q in quarters}
    return RegionRun(truth, accepted, flagged, summary["lines"], summary["rejected"], figures, group_cases)
