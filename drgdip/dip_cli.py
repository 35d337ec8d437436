"""DIP commands (docs/domain.md §5–§7): `drgdip dip …` and `drgdip compare`.

They combine several services offline, so they live here and not in a service: the lists are
parsed with the ingest service's national parser (`dip_case_from_list`), the stored history is
read through the grouper's public repository function, DRG grouping uses the grouper's scheme,
and catalogues, scores and prices come from the pricer's domain (`services.pricer.domain`).

The main CLI mounts `dip_app` (`app.add_typer(dip_app, name="dip")`) and the plain function
`compare_command` (`app.command("compare")(compare_command)`). Conventions are the DRG CLI's
(`services/pricer/cli.py`): inputs are JSON Lines (`shared.jsonl.read_jsonl`), blank lines
ignored, bad lines reported on stderr with their line number and skipped; every amount written
is a decimal string. Here the lines are national settlement lists (the 4101 `input` node, as
`drgdip generate` writes them), read with `dip_case_from_list`; a list the national parser
rejects is a bad line.

drgdip dip build-catalogue --region R --years 2022-2024 (--input LISTS.jsonl | --db URL) --out-dir DIR
        [--min-cases 15] [--scale 100] [--year-weights 1,2,7] [--primary-care FILE]
        [--or-procedures SCHEME_DIR/or_procedures.tsv] [--hospitals FILE] [--version N]
    Builds the DIP catalogue from the data years (§5, §6); its scores apply to the year after
    them (Y = 2025 for 2022-2024). Writes DIR/dip-catalogue-R-Y.json (the versioned document,
    `Catalogue.to_document`), DIR/dip-catalogue-report.json (exclusions, groups and cases by
    kind, core share, RIV …) and DIR/dip-groups.csv (one row per group), and prints the summary.
    --input: every list is a case treated in R. --db (default without --input: env DRGDIP_DB):
    the grouper's database, read with `services.grouper.repository.latest_received`: the
    latest list version of each case discharged in the data years; withdrawn lists are
    excluded (and counted); a case whose `treatment_region` is another
    region is excluded as `other_region`. The stored payload has no hospital level, so pass
    --hospitals: JSON {code: level}, or the generator's `<output>.hospitals.json` (a list of
    {code, level, …}); with --input it fills in lists without `hi_setl_lv`.
    --primary-care: group codes marked 基层病种, a JSON list or one code per line (# comments).
    --or-procedures: the grouping scheme's OR list; its codes are surgeries, other codes of
    chapters 00–86 therapeutic (without it every code of 00–86 is a surgery).

drgdip dip point-value --catalogue FILE [--years 2022-2024] [--year-weights 1,2,7]
        (--input LISTS.jsonl | --db URL) [--hospitals FILE] [--out FILE.json]
    The budget point value (预算点值, §7): Σ_y w_y · C_y / Σ_y w_y · S_y over the in-scope cases
    of the data years (default: the catalogue's own, with its year weights), C_y their cost and
    S_y their base scores under the catalogue. Prints the figure and its inputs per year (and
    writes them as JSON with --out). Lists are read as for build-catalogue.

drgdip dip group --catalogue FILE --input LISTS.jsonl --output OUT.jsonl [--trace]
    One output line per valid list: {id, dip_group, kind, treatment_type} (+ trace: the list
    of reasons the group was chosen). Every list gets exactly one group of the catalogue.

drgdip compare --drg-policy POLICY.json --dip-policy DIP_POLICY.json --catalogue FILE
        --scheme SCHEME_DIR --input LISTS.jsonl --out-dir DIR [--point-value PV] [--code-mode raw]
    Prices the same lists under DRG and under DIP and compares the payments (§7;
    `dip_pricing.compare`).
    DRG side: each list is grouped on the fly with the scheme (`grouper.core.load_scheme`)
    and priced with `pricing.price_case` as treated in the DRG policy's region; DIP side:
    `dip_pricing.price_dip_case` at --point-value, else the DIP policy's provisional point
    value. A case one method does not price counts at its cost (paid by item), as in
    `dip_pricing.compare`.
    Writes DIR/comparison.json (total, per hospital, per DIP group, per DRG),
    DIR/comparison-hospitals.csv, DIR/comparison-dip-groups.csv, DIR/comparison-drgs.csv and
    DIR/comparison-cases.jsonl (one line per case: both groups, case types and payments, the
    payment being null when unpriced), and prints the per-hospital table.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.pricer.cli import (
    load_policy_or_exit,
    parse_amount,
    progress_bar,
    read_hospital_levels,
    require_file,
    stderr,
    write_csv,
    write_json,
)
from services.pricer.domain.dip_catalogue import budget_point_value_of, build_catalogue
from services.pricer.domain.dip_pricing import (
    DipPolicy,
    compare,
    parse_dip_policy,
    price_dip_case,
)
from services.pricer.domain.policy import PolicyError
from services.pricer.domain.pricing import CaseToPrice, Price, price_case
from shared.dip import (
    DEFAULT_TREATMENT_TABLE,
    Catalogue,
    CatalogueError,
    DipCase,
    TreatmentTable,
    assign,
    dip_case_from_received,
    load_catalogue,
)
from shared.events import CaseReceived
from shared.jsonl import read_jsonl
from shared.money import ZERO

if TYPE_CHECKING:
    pass

T = TypeVar("T")

dip_app = typer.Typer(help="DIP (按病种分值付费): build a catalogue from history, group lists.",
                      no_args_is_help=True)


# --------------------------------------------------------------------------- reading

def dip_case_from_list(doc: Mapping[str, Any], *, region: str | None = None) -> DipCase:
    """A DipCase from a national settlement list (4101 `input`); raises `ListRejected`.

    ``region`` is the treatment region (the bureau's own); the list's ``insuplc`` is the
    insured place, which differs for off-site patients, so it is not used as the region.
    """
    from services.ingest.domain.national import case_fields, parse_settlement_list

    sl = parse_settlement_list(doc)
    f = case_fields(sl)
    level = sl.setlinfo.hi_setl_lv
    return DipCase(
        case_id=f.setl_id, year=f.discharge_date.year, region=region,
        hospital_code=f.hospital_code,
        hospital_level=int(level) if level in ("1", "2", "3") else None,
        principal_diagnosis=f.diagnoses[0] if f.diagnoses else "",
        secondary_diagnoses=f.diagnoses[1:], procedures=f.procedures,
        total_cost=f.total_cost or ZERO, patient_share=f.patient_share or ZERO, los=f.los,
        age=f.age, insurance_type=f.insurance_type, discharge_date=f.discharge_date,
    )


def _read_lists(path: Path, convert: Callable[[dict[str, Any]], T], err: Console,
                progress: Progress | None = None) -> Iterator[T]:
    """`convert(list)` for each valid line of a JSONL file of settlement lists; bad lines
    (not JSON, or rejected by the national parser) reported on stderr and skipped."""
    from services.ingest.domain.national import ListRejected

    def skipped(lineno: int, reason: str) -> None:
        err.print(f"[yellow]line {lineno}: {reason}; skipped[/]", highlight=False)

    on_bytes = None
    if progress is not None:
        task = progress.add_task("read", total=path.stat().st_size)

        def on_bytes(n: int) -> None:
            progress.advance(task, n)

    return read_jsonl(path, convert, skipped, on_bytes=on_bytes, skip=(ListRejected,))


def _code_list(path: Path | None, err: Console) -> list[str]:
    """Codes from a JSON list, or one per line (blank lines and # comments ignored)."""
    if path is None:
        return []
    require_file(path, err)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return [str(c) for c in orjson.loads(text)]
    return [s for line in text.splitlines() if (s := line.split("#", 1)[0].strip())]


def _treatment_table(or_procedures: Path | None, err: Console) -> TreatmentTable:
    """The treatment table, with the scheme's OR list (first column of a TSV with a header)."""
    if or_procedures is None:
        return DEFAULT_TREATMENT_TABLE
    require_file(or_procedures, err)
    with or_procedures.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    codes = frozenset(r[0].strip() for r in rows[1:] if r and r[0].strip())
    return TreatmentTable(or_procedures=codes)


def _with_level(case: DipCase, levels: Mapping[str, int]) -> DipCase:
    if case.hospital_level is not None or case.hospital_code not in levels:
        return case
    return case.model_copy(update={"hospital_level": levels[case.hospital_code]})


def _parse_years(text: str) -> tuple[int, int]:
    try:
        first, _, last = text.partition("-")
        span = int(first), int(last or first)
        if span[0] > span[1]:
            raise ValueError
    except ValueError:
        raise typer.BadParameter("FIRST-LAST, e.g. 2022-2024", param_hint="--years") from None
    return span


def _parse_weights(text: str, years: int) -> tuple[int, ...]:
    try:
        weights = tuple(int(w) for w in text.split(","))
        if any(w < 0 for w in weights) or not any(weights):
            raise ValueError
    except ValueError:
        raise typer.BadParameter("comma-separated non-negative integers",
                                 param_hint="--year-weights") from None
    if len(weights) != years:
        raise typer.BadParameter(f"{len(weights)} weights for {years} data years",
                                 param_hint="--year-weights")
    return weights


# --------------------------------------------------------------------------- the grouper's store

def stored_cases(db: str | None, first_year: int, last_year: int,
                 levels: Mapping[str, int]) -> list[DipCase]:
    """DipCases of the grouper's stored lists discharged in the years (latest list version
    of each case; withdrawn lists kept and marked, for the catalogue to exclude and count)."""
    import asyncio

    from services.grouper.config import GrouperSettings
    from services.grouper.repository import latest_received
    from shared.db import create_engine
    from shared.settings import load_settings

    async def fetch() -> list[tuple[str, CaseReceived]]:
        engine = create_engine(load_settings(GrouperSettings, db=db).db)
        try:
            async with engine.begin() as conn:  # the command's one transaction
                return await latest_received(conn, date(first_year, 1, 1), date(last_year, 12, 31))
        finally:
            await engine.dispose()

    return [dip_case_from_received(case_id, received, levels)
            for case_id, received in asyncio.run(fetch())]


# --------------------------------------------------------------------------- build-catalogue

@dip_app.command("build-catalogue")
def build_catalogue_command(
    region: Annotated[str, typer.Option("--region", help="the bureau's region code")],
    years: Annotated[str, typer.Option("--years", help="data years FIRST-LAST, e.g. 2022-2024")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for the outputs")] = Path("."),
    input: Annotated[Path | None, typer.Option(
        "--input", help="settlement lists (JSONL), all treated in the region")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="the grouper's database: its stored lists (env DRGDIP_DB)")] = None,
    min_cases: Annotated[int, typer.Option("--min-cases", min=1, help="cases for a core group")] = 15,
    scale: Annotated[int, typer.Option("--scale", min=1, help="score of the overall mean (100 or 1000)")] = 100,
    year_weights: Annotated[str, typer.Option(
        "--year-weights", help="weights of the data years, oldest first")] = "1,2,7",
    primary_care: Annotated[Path | None, typer.Option(
        "--primary-care", help="基层病种 group codes: JSON list or one per line")] = None,
    or_procedures: Annotated[Path | None, typer.Option(
        "--or-procedures", help="the scheme's or_procedures.tsv")] = None,
    hospitals: Annotated[Path | None, typer.Option(
        "--hospitals", help="hospital levels: JSON {code: level} or the generator's hospitals.json")] = None,
    version: Annotated[int, typer.Option("--version", min=1, help="catalogue version")] = 1,
) -> None:
    """Build a DIP catalogue (groups, scores, auxiliary coefficients) from history (§5, §6)."""
    err = stderr()
    if input is not None and db is not None:
        raise typer.BadParameter("give --input or --db, not both", param_hint="--input")
    first, last = _parse_years(years)
    weights = _parse_weights(year_weights, last - first + 1)
    treatment = _treatment_table(or_procedures, err)
    levels = read_hospital_levels(hospitals, err)
    primary = _code_list(primary_care, err)

    if input is not None:
        require_file(input, err)
        with progress_bar(err, "reading lists") as progress:
            cases = [_with_level(c, levels) for c in _read_lists(
                input, lambda doc: dip_case_from_list(doc, region=region), err, progress)]
    else:
        cases = stored_cases(db, first, last, levels)
        err.print(f"{len(cases)} stored lists discharged in {first}–{last}", highlight=False)
        if not levels:
            err.print("[yellow]no --hospitals: hospital levels unknown, the catalogue has no "
                      "same-level means[/]", highlight=False)
    try:
        catalogue = build_catalogue(
            cases, region=region, year=last + 1, min_cases=min_cases, year_weights=weights,
            scale=scale, primary_care=primary, treatment=treatment, version=version)
    except CatalogueError as e:
        err.print(f"[red]catalogue not built:[/] {e}", highlight=False)
        raise typer.Exit(1) from None

    out_dir.mkdir(parents=True, exist_ok=True)
    document = out_dir / f"dip-catalogue-{region}-{catalogue.year}.json"
    write_json(document, catalogue.to_document())
    write_json(out_dir / "dip-catalogue-report.json", catalogue.report.model_dump(mode="json"))
    write_csv(out_dir / "dip-groups.csv", catalogue.report_rows())
    typer.echo(catalogue_summary(catalogue))
    typer.echo(f"written to {out_dir} ({document.name})")


def catalogue_summary(catalogue: Catalogue) -> str:
    """The report in a few lines: scope, groups and cases by kind, core share, RIV, auxiliary."""
    r = catalogue.report
    by_type = Counter(f"{g.kind} {g.treatment_type.value}" for g in catalogue.groups.values()
                      if not g.fallback)
    excluded = ", ".join(f"{k} {n}" for k, n in r.exclusions.items() if n) or "none"
    lines = [
        f"DIP catalogue {catalogue.version_label}: region {catalogue.region}, scores for "
        f"{catalogue.year}, data {catalogue.data_years[0]}–{catalogue.data_years[-1]} "
        f"weighted {':'.join(map(str, catalogue.year_weights))}, min cases {catalogue.min_cases}, "
        f"scale {catalogue.scale}",
        f"cases: {r.cases_in} read, {r.cases_in_scope} in scope (excluded: {excluded}), "
        f"{r.trimmed} trimmed",
        "groups: " + ", ".join(f"{k} {n}" for k, n in r.groups_by_kind.items()),
        "groups by type: " + ", ".join(f"{k} {n}" for k, n in sorted(by_type.items())),
        f"cases in core groups: {r.cases_by_kind.get('core', 0)} "
        f"({float(r.core_case_share):.1%}); comprehensive {r.cases_by_kind.get('comprehensive', 0)}",
        f"overall mean cost {catalogue.overall_mean_cost} yuan; RIV "
        f"{'-' if r.riv is None else r.riv}",
        "auxiliary coefficients applied: "
        + (", ".join(f"{d} {n} groups" for d, n in r.auxiliary_applied.items()) or "none"),
    ]
    if r.primary_care_groups or r.primary_care_unknown:
        lines.append(f"primary-care groups: {r.primary_care_groups}"
                     + (f"; unknown codes: {', '.join(r.primary_care_unknown)}"
                        if r.primary_care_unknown else ""))
    return "\n".join(lines)


def _load_catalogue_or_exit(path: Path, err: Console) -> Catalogue:
    require_file(path, err)
    try:
        return load_catalogue(path.read_bytes())
    except CatalogueError as e:
        err.print(f"[red]invalid catalogue {path}:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


# --------------------------------------------------------------------------- point-value

@dip_app.command("point-value")
def point_value_command(
    catalogue: Annotated[Path, typer.Option("--catalogue", help="DIP catalogue JSON")],
    years: Annotated[str | None, typer.Option(
        "--years", help="data years FIRST-LAST (default: the catalogue's)")] = None,
    year_weights: Annotated[str | None, typer.Option(
        "--year-weights", help="weights of the data years, oldest first (default: the catalogue's)")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", help="settlement lists (JSONL), all treated in the catalogue's region")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="the grouper's database: its stored lists (env DRGDIP_DB)")] = None,
    hospitals: Annotated[Path | None, typer.Option(
        "--hospitals", help="hospital levels: JSON {code: level} or the generator's hospitals.json")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="also write the figure and its inputs as JSON")] = None,
    policy_out: Annotated[Path | None, typer.Option(
        "--policy-out", help="also write a DIP policy at this point value for the catalogue's region and "
                             "year (the hospitals' levels; other rules as the shipped example)")] = None,
) -> None:
    """The DIP budget point value (预算点值, §7) of a catalogue over history, with its inputs."""
    err = stderr()
    if input is not None and db is not None:
        raise typer.BadParameter("give --input or --db, not both", param_hint="--input")
    cat = _load_catalogue_or_exit(catalogue, err)
    first, last = _parse_years(years) if years else (cat.data_years[0], cat.data_years[-1])
    weights = _parse_weights(year_weights or ",".join(map(str, cat.year_weights)), last - first + 1)
    levels = read_hospital_levels(hospitals, err)
    if input is not None:
        require_file(input, err)
        with progress_bar(err, "reading lists") as progress:
            cases = [_with_level(c, levels) for c in _read_lists(
                input, lambda doc: dip_case_from_list(doc, region=cat.region), err, progress)]
    else:
        cases = stored_cases(db, first, last, levels)
        err.print(f"{len(cases)} stored lists discharged in {first}–{last}", highlight=False)
    try:
        result = budget_point_value_of(cat, cases, dict(zip(range(first, last + 1), weights, strict=True)))
    except CatalogueError as e:
        err.print(f"[red]no point value:[/] {e} (no in-scope case in {first}–{last})", highlight=False)
        raise typer.Exit(1) from None
    if out is not None:
        write_json(out, result.to_dict())
    typer.echo(result.text())
    if policy_out is not None:
        policy = dip_policy_document(cat, result.point_value, levels)
        write_json(policy_out, policy)
        typer.echo(f"DIP policy {policy['policy_id']} ({cat.region}, {cat.year}, point value "
                   f"{result.point_value}) written to {policy_out}; store it with "
                   f"`drgdip dip import-policy {policy_out} --catalogue {catalogue}`")


DIP_POLICY_EXAMPLE = Path(__file__).resolve().parent.parent / "services" / "pricer" / "dip-policy.example.json"


def dip_policy_document(cat: Catalogue, point_value: Decimal, levels: Mapping[str, int]) -> dict[str, Any]:
    """A DIP policy for the catalogue's region and year at `point_value`: the shipped example's
    deviation, scope and settlement rules, the given hospital levels."""
    doc: dict[str, Any] = orjson.loads(DIP_POLICY_EXAMPLE.read_bytes())
    doc.update(policy_id=f"{cat.region}-{cat.year}-dip", version=1, region=cat.region,
               valid_from=f"{cat.year}-01-01", valid_to=f"{cat.year}-12-31",
               notes=f"Built by `drgdip dip point-value` from catalogue {cat.version_label}: the budget point value "
                     "as provisional point value; the other rules are the shipped example's.")
    doc["hospitals"] = {"level_coefficients": doc["hospitals"]["level_coefficients"], "levels": dict(levels)}
    doc["points"]["provisional_point_value"] = str(point_value)
    parse_dip_policy(orjson.dumps(doc))  # what import-policy accepts
    return doc


# --------------------------------------------------------------------------- group

@dip_app.command("group")
def group_command(
    catalogue: Annotated[Path, typer.Option("--catalogue", help="DIP catalogue JSON")],
    input: Annotated[Path, typer.Option("--input", help="settlement lists (JSONL)")],
    output: Annotated[Path, typer.Option("--output", help="one group per line (JSONL)")],
    trace: Annotated[bool, typer.Option("--trace", help="add why each group was chosen")] = False,
) -> None:
    """Assign every list its one DIP group of the catalogue (core, pooled or fallback)."""
    err = stderr()
    cat = _load_catalogue_or_exit(catalogue, err)
    require_file(input, err)
    kinds: Counter[str] = Counter()
    with output.open("wb") as out, progress_bar(err, "grouping") as progress:
        for case in _read_lists(input, dip_case_from_list, err, progress):
            a = assign(cat, case)
            line: dict[str, Any] = {"id": case.case_id, "dip_group": a.code, "kind": a.kind,
                                    "treatment_type": a.treatment_type.value}
            if trace:
                line["trace"] = list(a.trace)
            out.write(orjson.dumps(line) + b"\n")
            kinds[a.kind] += 1
    err.print(f"catalogue {cat.version_label}: {sum(kinds.values())} lists grouped; "
              + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())), highlight=False)


# --------------------------------------------------------------------------- compare

@dataclass(frozen=True)
class _Both:
    """One list as each method needs it."""

    drg: CaseToPrice
    dip: DipCase


def compare_command(
    drg_policy: Annotated[Path, typer.Option("--drg-policy", help="DRG pricing policy JSON")],
    dip_policy: Annotated[Path, typer.Option("--dip-policy", help="DIP policy JSON")],
    catalogue: Annotated[Path, typer.Option("--catalogue", help="DIP catalogue JSON")],
    scheme: Annotated[Path, typer.Option("--scheme", help="grouping scheme folder (DRG side)")],
    input: Annotated[Path, typer.Option("--input", help="settlement lists (JSONL)")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for the outputs")] = Path("."),
    point_value: Annotated[str | None, typer.Option(
        "--point-value", help="DIP point value (default: the policy's provisional one)")] = None,
    code_mode: Annotated[str, typer.Option("--code-mode", help="raw or mapped (DRG grouping)")] = "raw",
) -> None:
    """Price the same lists by DRG and by DIP; payments compared per hospital, DIP group, DRG."""
    from services.grouper.domain import SchemeError, load_scheme

    err = stderr()
    drg_pol = load_policy_or_exit(drg_policy, err)
    dip_pol = _load_dip_policy_or_exit(dip_policy, err)
    cat = _load_catalogue_or_exit(catalogue, err)
    pv = parse_amount(point_value, "--point-value") or dip_pol.points.provisional_point_value
    if pv is None:
        raise typer.BadParameter("the DIP policy has no provisional point value: pass one",
                                 param_hint="--point-value")
    try:
        group = load_scheme(scheme).grouper(code_mode)
    except (SchemeError, ValueError) as e:
        err.print(f"[red]cannot load scheme {scheme}:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    require_file(input, err)

    def both(doc: dict[str, Any]) -> _Both:
        return _both_ways(doc, group, drg_pol.region)

    drg_prices: list[Price] = []
    rows: list[dict[str, Any]] = []
    dip_prices = []
    with progress_bar(err, "pricing") as progress:
        for case in _read_lists(input, both, err, progress):
            d, p = price_case(drg_pol, case.drg), price_dip_case(cat, dip_pol, case.dip, point_value=pv)
            drg_prices.append(d)
            dip_prices.append(p)
            rows.append({"case_id": d.case_id, "hospital_code": d.hospital_code, "drg": d.drg,
                         "drg_case_type": d.case_type.value,
                         "drg_payment": _text(d.total_payment), "dip_group": p.group,
                         "dip_case_type": p.case_type.value, "dip_payment": _text(p.payment),
                         "total_cost": str(d.total_cost)})
    result = compare(drg_prices, dip_prices)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "comparison.json", {
        "drg_policy": f"{drg_pol.policy_id} v{drg_pol.version}",
        "dip_policy": f"{dip_pol.policy_id} v{dip_pol.version}",
        "catalogue": cat.version_label, "point_value": str(pv), **result.to_dict()})
    write_csv(out_dir / "comparison-hospitals.csv",
               [r.to_dict("hospital_code") for r in result.by_hospital])
    write_csv(out_dir / "comparison-dip-groups.csv",
               [r.to_dict("dip_group") for r in result.by_dip_group])
    write_csv(out_dir / "comparison-drgs.csv", [r.to_dict("drg") for r in result.by_drg])
    with (out_dir / "comparison-cases.jsonl").open("wb") as fh:
        fh.writelines(orjson.dumps(r) + b"\n" for r in rows)

    table = Table(title=f"DRG ({drg_pol.policy_id}) vs DIP ({cat.version_label}, point value {pv})")
    for col in ("hospital", "cases", "DRG", "DIP", "DIP − DRG", "unpriced DRG/DIP"):
        table.add_column(col, justify="left" if col == "hospital" else "right")
    for r in (*result.by_hospital, result.total):
        table.add_row(r.key, str(r.cases), f"{r.drg_payment:,.2f}", f"{r.dip_payment:,.2f}",
                      f"{r.difference:+,.2f}", f"{r.drg_unpriced}/{r.dip_unpriced}")
    Console().print(table)
    typer.echo("unpriced cases count at their cost (paid by item)")
    typer.echo(f"written to {out_dir}")


def _both_ways(doc: dict[str, Any], group: Callable[[dict[str, Any]], Any],
               treatment_region: str) -> _Both:
    """The DRG input (grouped now, as the grouper service would) and the DIP case of a list."""
    from services.ingest.domain.national import case_fields, parse_settlement_list

    f = case_fields(parse_settlement_list(doc))
    dip = dip_case_from_list(doc)
    r = group({"sex": f.sex, "age": f.age, "age_days": f.age_days,
               "birth_weight": f.birth_weight, "diagnoses": list(f.diagnoses),
               "procedures": list(f.procedures)})
    drg = CaseToPrice(
        case_id=f.setl_id, hospital_code=f.hospital_code, hospital_level=dip.hospital_level,
        region=f.region, treatment_region=treatment_region, insurance_type=f.insurance_type,
        drg=r.drg, group_status=str(r.status), los=f.los, total_cost=f.total_cost or ZERO,
        fees=dict(f.fees), patient_share=f.patient_share or ZERO,
        discharge_date=f.discharge_date)
    return _Both(drg=drg, dip=dip)


def _load_dip_policy_or_exit(path: Path, err: Console) -> DipPolicy:
    require_file(path, err)
    try:
        return parse_dip_policy(path.read_bytes())
    except PolicyError as e:
        err.print(f"[red]invalid DIP policy {path}:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
