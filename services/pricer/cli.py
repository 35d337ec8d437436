"""The pricer's commands: `drgdip price`, `calibrate`, `simulate`, `advance`, `settle`,
`reprice`, `policy import`, `policy from-calibration`, `dip import-policy`, `calendar import`
and `budget set`.

The main CLI mounts the plain functions: `app.command("price")(price_command)`, and the same
for the others. `price`, and `calibrate`/`simulate` given --input, read files and write files
(nothing stored is touched). Input files are JSON Lines (one object per line); blank lines are
ignored, bad lines are reported on stderr with their line number and skipped. Amounts in the
input may be strings or JSON numbers; every amount written is a decimal string.

drgdip price --policy POLICY.json --input CASES.jsonl --output OUT.jsonl
    What-if repricing of cases under one policy (docs/domain.md §7).
    Input fields (`CaseToPrice`): case_id (or id), hospital_code, hospital_level (1|2|3,
    optional: else the policy's hospitals.levels), region (insured region), treatment_region
    (optional, 就医地), insurance_type (or hi_type: employee/310, resident/390), drg,
    group_status (or status; SUCCESS/QY are priced), los, total_cost, fees ({category: amount},
    optional), innovative_drug_amount, patient_share (自付+自费), per_diem (bool),
    discharge_date (optional). Off-site cases must be priced with the treatment location's
    policy: pass that policy.
    Output fields, one line per valid input line (`Price.to_dict()`): case_id, hospital_code,
    drg, case_type (normal | high_outlier | low_outlier | out_of_scope | not_grouped |
    no_weight | no_rate), policy_id, policy_version, weights_version, method, total_cost,
    patient_share, offsite, rw, hospital_level, base_rate, coefficient, payment_standard,
    group_mean_cost, outlier_cost, high_threshold, low_threshold, outlier_extra, base_points,
    points, add_on_points, point_value, payment, add_on, total_payment (payment + add_on),
    fund_payment (total_payment − patient_share, ≥ 0), special_review, notes.
    Unpriced cases have null payment figures.

drgdip calibrate --input GROUPED.jsonl --region R --year Y --budget AMOUNT --out-dir DIR
        [--expected-cases FILE]
    Weights and base rate from grouped history (§6). Y is the year the weights apply to; the
    data are the years before it, weighted --year-weights (default 1,2,7 oldest→newest).
    --expected-cases: the bureau's expected cases per DRG for the base rate (`DRG,cases`
    lines or a JSON object; default the newest data year's cases).
    Input fields (`HistoricalCase`): case_id (or id), year (or discharge_date), region
    (optional; rows of other regions are excluded), hospital_code, drg, adrg (default: the
    DRG's first 3 characters), group_status (or status), cost (or total_cost), los,
    per_diem, withdrawn.
    Writes DIR/weights-R-Y.json (a policy fragment: weights {version, table},
    group_mean_costs, overall_mean_cost, base_rate), DIR/calibration-report.json,
    DIR/calibration-groups.csv (one row per DRG), DIR/calibration-excluded.csv (case_id,
    reason) and prints the summary.

drgdip simulate --policy POLICY.json --input GROUPED.jsonl --out-dir DIR [--budget AMOUNT]
    DRG payment vs fee-for-service per hospital and DRG (§9); input fields as for `price`.
    With --budget under the point method the point value is budget / Σ points.
    Writes DIR/simulation.json, DIR/simulation-hospitals.csv, DIR/simulation-drgs.csv,
    DIR/simulation-prices.jsonl and prints the per-hospital profit/loss table.

drgdip policy import FILE [--db URL]; drgdip dip import-policy FILE --catalogue CAT [--db URL]
drgdip policy from-calibration --calibration DIR/weights-R-Y.json --out POLICY.json
        [--method rate|points] [--rate AMOUNT] [--point-value PV] [--hospitals FILE]
        [--template POLICY.json] [--policy-id ID] [--version N] [--scheme-id ID]
        [--valid-from D] [--valid-to D]
    A policy document from calibration output, valid for the calibration's year: its weights,
    group and overall mean costs, and the base rate (or --rate) for every insurance type and
    level, or --point-value under the point method; the other sections from --template.

drgdip reprice --region R [--from D] [--to D] [--batch 500] [--db URL]
    Stored cases treated in R re-priced under the policies in force now: a new price version
    and a `case-priced` event for each case whose policy version changed; idempotent.

drgdip calendar import FILE [--db URL]
    A year's public holidays and make-up working days (examples/calendar-2025.json).

drgdip budget set --region R --year Y --amount AMOUNT [--point-value PV] [--db URL]
    The region's budget for the year (a new version).

drgdip advance ...; drgdip settle ...
    Store a policy version, a prepayment or settlement statements in the pricer's database:
    one transaction per command (`in_transaction`).

The commands that change what is stored (policy import, dip import-policy, reprice, advance,
settle, calendar import, budget set) answer a summary of the change, the route's answer where a route makes the same
change: the main CLI records it in the audit (`drgdip.audit`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.pricer import handlers, repository
from services.pricer.domain.calibration import (
    CalibrationParams,
    ExpectedCasesError,
    HistoricalCase,
    calibrate,
    parse_expected_cases,
)
from services.pricer.domain.dip_pricing import DipPolicy
from services.pricer.domain.policy import (
    Policy,
    PolicyError,
    load_policy,
    policy_from_calibration,
)
from services.pricer.domain.pricing import CaseToPrice, price_case
from services.pricer.domain.simulation import coverage_warning, simulate
from shared import jsonl
from shared.errors import DomainError, NotFound
from shared.money import ZERO
from shared.progress import progress_bar

T = TypeVar("T")

M = TypeVar("M", bound=BaseModel)


class SparseFix(StrEnum):
    adrg_mean = "adrg_mean"
    expert = "expert"
    none = "none"


def stderr() -> Console:
    return Console(stderr=True)


def read_models(path: Path, model: type[M], err: Console,
                progress: Progress | None = None) -> Iterator[M]:
    """Valid lines of a JSONL file as `model`; bad lines reported on stderr and skipped."""
    return read_jsonl(path, model.model_validate, err, progress)


def read_jsonl(path: Path, convert: Callable[[dict[str, Any]], T], err: Console,
               progress: Progress | None = None, skip: tuple[type[Exception], ...] = ()) -> Iterator[T]:
    """`shared.jsonl.read_jsonl` for a command: a line that is not a JSON object, or that
    `convert` rejects (a ValueError, pydantic's included, or one of `skip`), is reported on
    stderr and skipped; `progress` follows the bytes read."""
    task = progress.add_task("read", total=path.stat().st_size) if progress else None

    def on_error(lineno: int, reason: str) -> None:
        err.print(f"[yellow]line {lineno}: {reason}; skipped[/]", highlight=False)

    def on_bytes(n: int) -> None:
        if progress is not None and task is not None:
            progress.advance(task, n)

    return jsonl.read_jsonl(path, convert, on_error, on_bytes=on_bytes, skip=skip)


def load_policy_or_exit(path: Path, err: Console) -> Policy:
    try:
        return load_policy(path)
    except OSError as e:
        err.print(f"[red]cannot read policy:[/] {e}", highlight=False)
    except PolicyError as e:
        err.print(f"[red]invalid policy {path}:[/] {e}", highlight=False)
    raise typer.Exit(2)


def require_file(path: Path, err: Console) -> None:
    if not path.is_file():
        err.print(f"[red]input not found:[/] {path}", highlight=False)
        raise typer.Exit(2)


def parse_amount(text: str | None, option: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not a decimal amount", param_hint=option) from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter("must be a non-negative amount", param_hint=option)
    return value


def write_json(path: Path, doc: Any) -> None:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)


# --------------------------------------------------------------------------- price

def price_command(
    policy: Annotated[Path, typer.Option("--policy", help="pricing policy JSON")],
    input: Annotated[Path, typer.Option("--input", help="cases, one JSON object per line")],
    output: Annotated[Path, typer.Option("--output", help="prices, one JSON object per line")],
) -> None:
    """What-if repricing of a JSONL file of cases under a policy (nothing stored is touched)."""
    err = stderr()
    pol = load_policy_or_exit(policy, err)
    require_file(input, err)
    types: Counter[str] = Counter()
    payment = ZERO
    with output.open("wb") as out, progress_bar(err, "pricing", counts=False) as progress:
        for case in read_models(input, CaseToPrice, err, progress):
            price = price_case(pol, case)
            out.write(orjson.dumps(price.to_dict()) + b"\n")
            types[price.case_type.value] += 1
            payment += price.total_payment or 0
    err.print(f"policy {pol.policy_id} v{pol.version} ({pol.method}), weights "
              f"{pol.weights.version}", highlight=False)
    err.print(f"cases priced: {sum(types.values())}; "
              + ", ".join(f"{t} {n}" for t, n in sorted(types.items())), highlight=False)
    err.print(f"total payment: {payment} yuan", highlight=False)


# --------------------------------------------------------------------------- calibrate

def calibrate_command(
    region: Annotated[str, typer.Option("--region", help="region code")],
    year: Annotated[int, typer.Option("--year", help="the year the weights apply to")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for the outputs")] = Path("."),
    input: Annotated[Path | None, typer.Option(
        "--input", help="grouped historical cases (JSONL); default: the priced cases stored by the pricer")] = None,
    db: Annotated[str | None, typer.Option("--db", help="the pricer's database (env DRGDIP_DB)")] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="DRG budget, yuan: gives the base rate")
    ] = None,
    year_weights: Annotated[
        str, typer.Option("--year-weights", help="weights of the data years, oldest first")
    ] = "1,2,7",
    sparse_min_cases: Annotated[
        int, typer.Option("--sparse-min-cases", help="fewer kept cases = sparse group")
    ] = 5,
    sparse_fix: Annotated[
        SparseFix, typer.Option("--sparse-fix", help="how sparse groups get their weight")
    ] = SparseFix.adrg_mean,
    weights_version: Annotated[
        str | None, typer.Option("--weights-version", help="id of the new weights table")
    ] = None,
    expected_cases: Annotated[Path | None, typer.Option(
        "--expected-cases",
        help="expected cases per DRG for the base rate: `DRG,cases` lines or a JSON object "
             "(default: the newest data year's cases)")] = None,
) -> None:
    """Calibrate weights (and the base rate from a budget) from the three years before `year` (§6)."""
    err = stderr()
    if input is not None:
        require_file(input, err)
    expected = None
    if expected_cases is not None:
        require_file(expected_cases, err)
        try:
            expected = parse_expected_cases(expected_cases.read_text(encoding="utf-8-sig"))
        except (ExpectedCasesError, UnicodeDecodeError) as e:
            err.print(f"[red]invalid expected cases {expected_cases}:[/] {e}", highlight=False)
            raise typer.Exit(2) from None
    try:
        weights = tuple(int(w) for w in year_weights.split(","))
        if not weights or any(w < 0 for w in weights):
            raise ValueError
    except ValueError:
        raise typer.BadParameter("comma-separated non-negative integers",
                                 param_hint="--year-weights") from None
    params = CalibrationParams(
        region=region, year=year, budget=parse_amount(budget, "--budget"), year_weights=weights,
        sparse_min_cases=sparse_min_cases, sparse_fix=sparse_fix.value,
        weights_version=weights_version, expected_cases=expected,
    )
    if input is not None:
        with progress_bar(err, "reading", counts=False) as progress:
            cases = list(read_models(input, HistoricalCase, err, progress))
    else:
        first, last = year - len(weights), year - 1
        cases, span = in_transaction(db, lambda conn: _stored_history(conn, region, first, last))
        err.print(f"{len(cases)} stored cases of {region}, {first}–{last} (the data years of "
                  f"weights for {year})", highlight=False)
        if not cases:
            err.print(_why_no_history(region, year, first, last, span), highlight=False)
            raise typer.Exit(1)
        if span is not None and span[2] > last:
            err.print(f"[yellow]note: stored cases reach {span[2]}; weights for {span[2] + 1} "
                      f"(--year {span[2] + 1}) would use {span[2] - len(weights) + 1}–{span[2]}[/]",
                      highlight=False)
    try:
        report = calibrate(cases, params)
    except ValueError as e:
        err.print(f"[red]calibration failed:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"weights-{region}-{year}.json", report.weights_document())
    write_json(out_dir / "calibration-report.json", report.to_dict())
    write_csv(out_dir / "calibration-groups.csv", report.csv_rows())
    write_csv(out_dir / "calibration-excluded.csv", report.excluded_rows())
    typer.echo(report.summary_text())
    typer.echo(f"written to {out_dir}")


async def _stored_history(conn: AsyncConnection, region: str, first: int,
                          last: int) -> tuple[list[HistoricalCase], tuple[int, int, int] | None]:
    cases = await repository.load_history(conn, region, first, last)
    return cases, await repository.priced_span(conn, region)


def _why_no_history(region: str, year: int, first: int, last: int,
                    span: tuple[int, int, int] | None) -> str:
    """Why calibration found no stored case, and what to do."""
    if span is None:
        return (f"[red]no priced case of region {region} is stored.[/] Imported lists reach the "
                "pricer only while the pipeline runs: start `drgdip serve all` (or the services) "
                "on the same database, wait until the lists are grouped and priced, then "
                "calibrate again; or calibrate from a file with --input GROUPED.jsonl")
    n, lo, hi = span
    hint = (f"; for weights from {hi - last + first}–{hi} use --year {hi + 1}"
            if hi < first or lo > last else "")
    return (f"[red]the {n} stored cases of {region} were discharged in {lo}–{hi}, none in "
            f"{first}–{last}[/] (--year {year} is the year the weights apply to; the data are "
            f"the years before it){hint}")


def in_transaction(db: str | None, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work(conn)` in one transaction on the pricer's database (`--db` or its settings),
    its schema upgraded first: the command's one transaction."""
    from services.pricer.config import PricerSettings
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    async def run(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_on_database(load_settings(PricerSettings, db=db).db, repository.NAME, run)


Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]


def policy_import_command(file: Path, db: Db = None) -> dict[str, Any]:
    """Store a pricing policy JSON in the pricer's database."""
    try:
        p, stored = in_transaction(db, lambda conn: handlers.import_policy(conn, file.read_bytes()))
    except DomainError as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"imported policy {p.policy_id} v{p.version} ({p.region}, from {p.valid_from}, "
               f"{len(p.weights.table)} weights)")
    return handlers.policy_summary(p, stored)


def dip_import_policy_command(
    file: Annotated[Path, typer.Argument(help="DIP policy JSON (drgdip.dip-policy/1)")],
    catalogue: Annotated[Path, typer.Option(help="the catalogue document the policy prices with")],
    db: Db = None,
) -> dict[str, Any]:
    """Store a DIP policy version with its catalogue in the pricer's database."""
    async def run(conn: AsyncConnection) -> DipPolicy:
        return await handlers.import_dip_policy(conn, file.read_bytes(), catalogue.read_bytes())

    try:
        p = in_transaction(db, run)
    except (DomainError, OSError) as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"imported DIP policy {p.policy_id} v{p.version} ({p.region}, from {p.valid_from})")
    return handlers.dip_policy_summary(p)


class Method(StrEnum):
    rate = "rate"
    points = "points"


def read_hospital_levels(path: Path | None, err: Console) -> dict[str, int]:
    """{code: level} from a JSON mapping or the generator's list of {code, level, …}."""
    if path is None:
        return {}
    require_file(path, err)
    try:
        doc = orjson.loads(path.read_bytes())
        rows = doc.items() if isinstance(doc, dict) else ((h.get("code"), h.get("level")) for h in doc)
        levels = {str(code): int(level) for code, level in rows
                  if code and level in (1, 2, 3, "1", "2", "3")}
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        levels = {}
    if not levels:
        err.print(f"[red]no hospital level in {path}[/] (expected {{code: level}} or "
                  "[{code, level, …}])", highlight=False)
        raise typer.Exit(2)
    return levels


def policy_from_calibration_command(
    calibration: Annotated[Path, typer.Option(
        "--calibration", help="weights-R-Y.json written by `drgdip calibrate`")],
    out: Annotated[Path, typer.Option("--out", help="the policy document to write")],
    method: Annotated[Method, typer.Option("--method", help="rate (费率法) or points (点数法)")] = Method.rate,
    rate: Annotated[str | None, typer.Option(
        "--rate", help="rate method: yuan per RW (default: the calibration's base rate)")] = None,
    point_value: Annotated[str | None, typer.Option(
        "--point-value", help="point method: the provisional point value, yuan per point")] = None,
    policy_id: Annotated[str | None, typer.Option(
        "--policy-id", help="default: REGION-YEAR-drg-METHOD")] = None,
    version: Annotated[int, typer.Option("--version", min=1, help="policy version")] = 1,
    scheme_id: Annotated[str, typer.Option("--scheme-id", help="the grouping scheme of the DRGs")] = "chs-drg-1.1",
    hospitals: Annotated[Path | None, typer.Option(
        "--hospitals", help="hospital levels: JSON {code: level} or the generator's hospitals.json")] = None,
    template: Annotated[Path | None, typer.Option(
        "--template", help="a policy whose other sections (coefficients, outliers, scope, "
                           "settlement …) are kept")] = None,
    valid_from: Annotated[str | None, typer.Option("--valid-from", help="default: Jan 1 of the year")] = None,
    valid_to: Annotated[str | None, typer.Option("--valid-to", help="default: Dec 31 of the year")] = None,
) -> None:
    """Build a pricing policy from calibration output, ready for `drgdip policy import`."""
    err = stderr()
    require_file(calibration, err)
    try:
        fragment = orjson.loads(calibration.read_bytes())
        if not isinstance(fragment, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        err.print(f"[red]invalid calibration output {calibration}:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    levels = read_hospital_levels(hospitals, err)
    base = load_policy_or_exit(template, err) if template is not None else None
    try:
        policy = policy_from_calibration(
            fragment, method=method.value, policy_id=policy_id, version=version,
            scheme_id=scheme_id, rate=parse_amount(rate, "--rate"),
            point_value=parse_amount(point_value, "--point-value"), levels=levels,
            template=base, valid_from=_date(valid_from, "--valid-from"),
            valid_to=_date(valid_to, "--valid-to"))
    except PolicyError as e:
        err.print(f"[red]no policy:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    write_json(out, policy.to_document())
    if not policy.hospitals.levels and not policy.hospitals.coefficients:
        err.print("[yellow]no hospital levels (--hospitals or --template): cases of hospitals "
                  "without a level are not priced (no_rate)[/]", highlight=False)
    how = (f"rate {policy.rate_for(None, None)} yuan per RW" if policy.method == "rate"
           else f"provisional point value {policy.points.provisional_point_value}")
    typer.echo(f"policy {policy.policy_id} v{policy.version}: {policy.region}, "
               f"{policy.valid_from}–{policy.valid_to}, {policy.method}, {how}, "
               f"{len(policy.weights.table)} weights ({policy.weights.version}), "
               f"{len(policy.hospitals.levels)} hospital levels")
    typer.echo(f"written to {out}; store it with `drgdip policy import {out}`")


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("YYYY-MM-DD", param_hint=option) from None


def reprice_command(
    region: Annotated[str, typer.Option("--region", help="treatment region of the cases")],
    date_from: Annotated[str | None, typer.Option("--from", help="first discharge date, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last discharge date, YYYY-MM-DD")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="cases per transaction")] = 500,
    db: Db = None,
) -> dict[str, Any]:
    """Re-price stored cases under the policies in force now (e.g. after `policy import`): new
    price versions, announced downstream; running it again changes nothing."""
    from services.pricer.config import PricerSettings
    from shared.messaging import Outbox
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    first, last = _date(date_from, "--from"), _date(date_to, "--to")
    err = stderr()

    async def run(engine: AsyncEngine) -> handlers.Repricing:
        with progress_bar(err, "re-pricing") as progress:
            task = progress.add_task("reprice", total=None)
            return await handlers.reprice(
                engine, Outbox(repository.NAME, repository.metadata), repository.Policies(), region,
                date_from=first, date_to=last, batch=batch,
                progress=lambda done, total: progress.update(task, completed=done, total=total))

    r = run_on_database(load_settings(PricerSettings, db=db).db, repository.NAME, run)
    span = f"{first or 'the first'}–{last or 'the last'} discharge"
    if not r.cases:
        typer.echo(f"no priced case treated in {region} ({span}) is stored: the pipeline prices "
                   "the lists it receives while it runs")
        return r.summary(region, first, last)
    typer.echo(f"{r.cases} cases of {region} ({span}): {r.repriced} re-priced, "
               f"{r.unchanged} unchanged" + (f", {r.not_repriceable} not re-priceable" if r.not_repriceable else ""))
    for label, n in sorted(r.by_policy.items()):
        typer.echo(f"  {label}: {n}")
    if hint := r.regroup_hint(region):
        err.print(hint, style="yellow", markup=False, highlight=False, soft_wrap=True)
    return r.summary(region, first, last)


def advance_command(
    hospital: Annotated[str, typer.Option("--hospital", help="hospital code")],
    year: Annotated[str, typer.Option("--year", help="the settlement year it is netted in")],
    amount: Annotated[str, typer.Option("--amount", help="yuan")],
    note: Annotated[str | None, typer.Option("--note", help="why (kept with the record)")] = None,
    db: Annotated[str | None, typer.Option("--db", help="the pricer's database (env DRGDIP_DB)")] = None,
) -> dict[str, Any]:
    """Record a prepayment (预付金) to a hospital; the year's clearing nets it (§8)."""
    value = parse_amount(amount, "--amount")
    assert value is not None
    try:
        in_transaction(db, lambda conn: handlers.record_advance(conn, hospital, year, value, "cli", note))
    except DomainError as e:
        raise typer.BadParameter(str(e), param_hint="--amount") from None
    typer.echo(f"advance of {value} yuan to {hospital} recorded for {year}")
    return {"hospital": hospital, "year": year, "amount": str(value), "note": note}


def settle_command(
    policy_id: Annotated[str, typer.Option("--policy-id", help="the stored policy to settle under")],
    period: Annotated[str, typer.Option(
        "--period", help="YYYY-MM: monthly pre-settlement; YYYY: annual clearing")],
    budget: Annotated[str | None, typer.Option(
        "--budget", help="annual clearing: the year's budget, yuan (default: the region's, `drgdip budget set`)")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="also write the statements as CSV")] = None,
    db: Annotated[str | None, typer.Option("--db", help="the pricer's database (env DRGDIP_DB)")] = None,
) -> dict[str, object]:
    """Pre-settle a month or clear a year (§8); each run stores a new statement version."""
    amount = parse_amount(budget, "--budget") if len(period) == 4 else None  # a month takes none
    try:
        run = in_transaction(db, lambda conn: handlers.settle(conn, policy_id, period, amount))
    except NotFound:  # nothing priced under the policy in the period: nothing stored
        stderr().print(f"no priced case under {policy_id} in {period}")
        raise typer.Exit(1) from None
    except DomainError as e:  # no budget given nor stored, an unknown policy, a bad period
        raise typer.BadParameter(e.message, param_hint=f"--{e.field or 'period'}".replace("_", "-")) from None
    statements = run.statements
    rows = [row for st in statements for row in st.csv_rows()]
    if csv_out is not None:
        write_csv(csv_out, rows)
    table = Table(title=f"{'annual clearing' if len(period) == 4 else 'pre-settlement'} {period} ({policy_id})")
    figure = "balance" if len(period) == 4 else "presettled"  # what the bureau pays (or recovers)
    for col in ("hospital", "version", figure):
        table.add_column(col, justify="right" if col != "hospital" else "left")
    for st in statements:
        table.add_row(st.hospital_code, str(st.version), f"{st.amount(figure):,.2f}")
    Console().print(table)
    return run.summary()


def calendar_import_command(
    file: Annotated[Path, typer.Argument(help="a year's calendar JSON (examples/calendar-2025.json)")],
    db: Db = None,
) -> dict[str, Any]:
    """Import a year's public holidays and make-up working days (调休), replacing that year's
    earlier import: the working days of the settlement timeliness (§8)."""
    err = stderr()
    require_file(file, err)
    try:
        answer = in_transaction(db, lambda conn: handlers.import_calendar(conn, file.read_bytes(), "cli"))
    except DomainError as e:
        err.print(f"[red]invalid calendar {file}[/]" + (f" at {e.field}" if e.field else "") + f": {e.message}",
                  highlight=False)
        raise typer.Exit(2) from None
    typer.echo(f"calendar {answer['year']}: {answer['holidays']} holidays, {answer['workdays']} make-up working days")
    return answer


def budget_set_command(
    region: Annotated[str, typer.Option("--region", help="the region (统筹区)")],
    year: Annotated[str, typer.Option("--year", help="YYYY")],
    amount: Annotated[str, typer.Option("--amount", help="the year's budget, yuan")],
    point_value: Annotated[str | None, typer.Option("--point-value", help="the budget point value (预算点值)")] = None,
    db: Db = None,
) -> dict[str, Any]:
    """Set a region's budget for a year (a new version): budget execution compares with it and
    the annual clearing uses it when no --budget is given."""
    value = parse_amount(amount, "--amount")
    pv = parse_amount(point_value, "--point-value")
    assert value is not None
    try:
        answer = in_transaction(db, lambda conn: handlers.set_budget(conn, region, year, value, pv, "cli"))
    except DomainError as e:
        raise typer.BadParameter(e.message, param_hint=f"--{(e.field or 'amount').replace('_', '-')}") from None
    typer.echo(f"budget of {region} for {year}: {value} yuan" + (f", point value {pv}" if pv else "")
               + f" (version {answer['version']})")
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in answer.items()}


# --------------------------------------------------------------------------- simulate

def simulate_command(
    policy: Annotated[Path, typer.Option("--policy", help="pricing policy JSON")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for the outputs")] = Path("."),
    input: Annotated[Path | None, typer.Option(
        "--input", help="grouped cases (JSONL); default: the stored cases of --region and --year")] = None,
    region: Annotated[str | None, typer.Option("--region", help="region of the stored cases")] = None,
    year: Annotated[int | None, typer.Option("--year", help="discharge year of the stored cases")] = None,
    db: Annotated[str | None, typer.Option("--db", help="the pricer's database (env DRGDIP_DB)")] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="point method: point value = budget / Σ points")
    ] = None,
) -> None:
    """Simulate DRG payment vs fee-for-service per hospital and DRG (模拟运行, §9)."""
    err = stderr()
    pol = load_policy_or_exit(policy, err)
    if input is not None:
        require_file(input, err)
        with progress_bar(err, "reading", counts=False) as progress:
            cases = list(read_models(input, CaseToPrice, err, progress))
    elif region is None or year is None:
        raise typer.BadParameter("give --input, or --region and --year for the stored cases",
                                 param_hint="--input")
    else:
        cases = in_transaction(db, lambda conn: repository.load_cases_to_price(conn, region, year))
        err.print(f"{len(cases)} stored cases of {region} discharged in {year}")
    warning = coverage_warning(pol, cases)
    if warning:
        err.print(f"[yellow]warning: {warning}[/]", highlight=False)
    report = simulate(pol, cases, budget=parse_amount(budget, "--budget"))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "simulation.json", report.to_dict())
    write_csv(out_dir / "simulation-hospitals.csv", report.hospital_rows())
    write_csv(out_dir / "simulation-drgs.csv", report.drg_rows())
    with (out_dir / "simulation-prices.jsonl").open("wb") as fh:
        for p in report.prices:
            fh.write(orjson.dumps(p.to_dict()) + b"\n")
    with (out_dir / "simulation-cases.jsonl").open("wb") as fh:  # the cases, as `drgdip price` reads them
        for case in cases:
            fh.write(orjson.dumps(case.model_dump(mode="json", exclude_defaults=True)) + b"\n")

    table = Table(title=f"simulation: {pol.policy_id} v{pol.version}, weights {pol.weights.version}")
    cols = ["hospital_code", "cases", "cmi", "drg_payment", "fee_for_service", "profit_loss",
            "profit_loss_ratio", "high_share", "low_share"]
    for c in cols:
        table.add_column(c, justify="left" if c == "hospital_code" else "right")
    for row in [*report.hospital_rows(), {**report.total.to_dict("hospital_code"),
                                          "hospital_code": "TOTAL"}]:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in cols))
    Console(width=160).print(table)
    if report.point_value is not None:
        typer.echo(f"point value: {report.point_value}")
    typer.echo(f"written to {out_dir}")
