"""`drgdip generate`: write a synthetic region's settlement lists as JSON Lines.

One line per list (the 4101 `input` node), in discharge-date order; a rich progress bar on
stderr and a summary at the end. The hospitals (code, level, region, cost level) are written
next to the output as `<output>.hospitals.json`, because the lists themselves do not say a
hospital's level in a way the pricer can rely on, and the ground truth of the seeded review
patterns as `<output>.truth.jsonl` (one row per case a rule should flag, or, `seeded` false,
should not: setl_id, fixmedins_code, case_id, rule, pattern, related_setl_id).

`--abuse-rate R` seeds every case-level review pattern (split admission, upcoding, low-standard
admission, cost shifting) and planned chemotherapy readmission pairs (true negatives) at R per
fresh case, unambiguously (`PatternRates.abuse`); without it the lists are what they always were.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from drgdip.generate import GroundTruth, PatternRates, RegionGenerator, episode_truth
from shared.progress import progress_bar


def generate_command(
    scheme: Annotated[Path, typer.Option(help="grouping scheme folder (e.g. the national CHS-DRG 1.1)")],
    output: Annotated[Path, typer.Option(help="JSON Lines file to write")],
    hospitals: Annotated[int, typer.Option(min=1, help="number of hospitals in the region")] = 20,
    years: Annotated[int, typer.Option(min=1, help="calendar years of discharges")] = 3,
    cases: Annotated[int, typer.Option(min=0, help="settlement lists to write")] = 10_000,
    seed: Annotated[int, typer.Option(help="same seed, same output")] = 1,
    end_year: Annotated[int, typer.Option(help="last year; discharges end Dec 31 of it")] = 2024,
    abuse_rate: Annotated[float | None, typer.Option(
        min=0.0, max=0.15, help="seed each case-level review pattern at this share of cases "
                                "(default: the generator's usual mix)")] = None,
) -> None:
    """Generate a synthetic region: hospitals of three levels, years of discharges, seeded
    review patterns (readmissions, suspicious CC, short low-cost stays, bad records)."""
    err = Console(stderr=True)
    started = time.perf_counter()
    rates = None if abuse_rate is None else PatternRates.abuse(abuse_rate)
    gen = RegionGenerator(scheme, hospitals=hospitals, years=years, cases=cases, seed=seed,
                          end_year=end_year, rates=rates)
    truth, truth_file = GroundTruth(), output.with_name(output.name + ".truth.jsonl")
    setup = time.perf_counter() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    dumps = orjson.dumps
    t0 = time.perf_counter()
    with output.open("wb", buffering=1 << 20) as fh, truth_file.open("wb") as tf, progress_bar(
        err, "[bold]generating", transient=False) as progress:
        task = progress.add_task("lists", total=cases)
        step = max(1, min(10_000, cases // 200 or 1))
        for n, lst in enumerate(gen, start=1):
            fh.write(dumps(lst))
            fh.write(b"\n")
            for row in truth.rows(lst):
                tf.write(dumps(row) + b"\n")
            if n % step == 0:
                progress.update(task, completed=n)
        progress.update(task, completed=cases)
        for row in episode_truth(gen.episodes):  # the hospital-level episodes, after the cases
            tf.write(dumps(row) + b"\n")
    elapsed = time.perf_counter() - t0
    hospitals_file = output.with_name(output.name + ".hospitals.json")
    hospitals_file.write_bytes(orjson.dumps([h.to_dict() for h in gen.hospitals],
                                            option=orjson.OPT_INDENT_2))
    print_summary(Console(), gen, output, hospitals_file, setup, elapsed)


def print_summary(console: Console, gen: RegionGenerator, output: Path, hospitals_file: Path,
                  setup: float, elapsed: float) -> None:
    """The end-of-run summary: volumes, case mix, complication shares, seeded patterns."""
    st = gen.stats.to_dict()
    rate = st["lists"] / elapsed if elapsed > 0 else 0.0
    console.print(f"[bold]{st['lists']:,}[/] lists -> {output}  (scheme {gen.scheme.id}, "
                  f"seed {gen.seed}, setup {setup:.1f}s, {rate:,.0f} lists/s incl. writing)")
    console.print(f"hospitals -> {hospitals_file}")
    console.print(f"ground truth of the seeded review patterns -> "
                  f"{output.with_name(output.name + '.truth.jsonl')}")
    if gen.scheme.manifest.get("not_for_payment"):
        console.print("[yellow]scheme is a SAMPLE, not for payment[/]")

    t = Table(title="Lists per year and hospital level")
    t.add_column("year")
    t.add_column("lists", justify="right")
    for year, n in st["per_year"].items():
        t.add_row(year, f"{n:,}")
    for level, n in st["per_level"].items():
        t.add_row(level, f"{n:,}")
    console.print(t)

    m = Table(title=f"Share per MDC ({st['mdcs_reached']} MDCs reached, grouped {st['grouped_share']:.1%})")
    m.add_column("MDC")
    m.add_column("share", justify="right")
    for mdc, share in st["per_mdc"].items():
        m.add_row(mdc, f"{share:.2%}")
    console.print(m)

    p = Table(title="Seeded patterns (setlinfo._synthetic) and other features")
    p.add_column("what")
    p.add_column("count", justify="right")
    for name, n in st["patterns"].items():
        p.add_row(name, f"{n:,}")
    p.add_row("  readmission pairs", f"{st['readmission_pairs']:,}")
    for kind, n in st["bad_record_kinds"].items():
        p.add_row(f"  bad_record: {kind}", f"{n:,}")
    for kind, n in st["outliers"].items():
        p.add_row(f"cost outlier ({kind}, untagged)", f"{n:,}")
    p.add_row("planned readmission flag (days_rinp_flag_31=2)", f"{st['planned_readmissions']:,}")
    p.add_row("with counted MCC", f"{st['mcc_share']:.1%}")
    p.add_row("with counted CC (no MCC)", f"{st['cc_share']:.1%}")
    p.add_row("newborns", f"{st['newborns']:,}")
    p.add_row("off-site insured (异地)", f"{st['off_site']:,}")
    p.add_row("mean cost (yuan)", st["mean_cost"])
    console.print(p)


if __name__ == "__main__":  # pragma: no cover - `python -m drgdip.generate_cli`
    typer.run(generate_command)
