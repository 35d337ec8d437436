"""The main job, in one command: a whole synthetic pilot region through DRG payment.

`drgdip demo` runs every stage in one process (embedded mode: in-process bus, one SQLite file
in the data folder) and walks the bureau's year (docs/domain.md §6–§9, §12):

1. generate a region: hospitals of three levels, three years of discharges (`drgdip.generate`);
2. bulk-import the lists through ingest's `Intake` (stored verbatim, QC, `case-received`), and
   wait until the pipeline has grouped, priced and reviewed every accepted case;
3. calibrate DRG weights on the stored grouped history, the three years weighted 1:2:7 (§6);
4. build a point-method policy (点数法, §7) for the last year with those weights and a budget of
   95 % of that year's fee-for-service cost, and simulate it (模拟运行, §9);
5. import the policy and re-price the last year *in the pipeline*: there is no re-price command
   yet, so the demo regroups the year with the same scheme, which re-announces its cases; the
   running pricer prices them under the policy now in force and stores them (new rows, versions
   kept, §13) — settlement only ever reads stored prices;
6. pre-settle every month of the last year and clear the year (§8), then print the summary and
   (unless --no-serve) serve the gateway on the same runtime.

The stored grouped cases are read with the pricer's own types: `HistoricalCase` for the
calibration and `case_to_price` (what the pricer prices a `case-grouped` event with) for the
simulation, so the simulation prices exactly what settlement later clears.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import func, select

from drgdip.generate import PREFECTURE, Hospital, RegionGenerator, grouping_case
from services.grouper.domain import Scheme, load_scheme
from services.pricer.cli import write_csv, write_json
from services.pricer.domain.calibration import (
    CalibrationParams,
    CalibrationReport,
    HistoricalCase,
    calibrate,
)
from services.pricer.domain.grouped import case_to_price
from services.pricer.domain.policy import Policy, parse_policy
from services.pricer.domain.pricing import (
    DRG_PRICED,
    GROUPED_STATUSES,
    CaseToPrice,
    price_many,
    select_policy,
)
from services.pricer.domain.settlement import Clearing, Statement
from services.pricer.domain.simulation import SimulationReport, simulate
from services.pricer.handlers import import_policy, run_annual_clearing, run_monthly_presettlement
from shared.bus.memory import MemoryBus
from shared.errors import DomainError
from shared.events import CaseGrouped
from shared.money import to_fen
from shared.runtime import Runtime

SAMPLE_SCHEME = Path(__file__).resolve().parent / "sample_scheme"
REGION = PREFECTURE  # the synthetic prefecture's admdvs code: the bureau's region
YEARS = 3
YEAR_WEIGHTS = (1, 2, 7)  # §6, oldest → newest
BUDGET_SHARE = Decimal("0.95")  # the DRG budget: 95 % of last year's fee-for-service cost
LEVEL_COEFFICIENTS = {"3": "1.0", "2": "0.85", "1": "0.7"}  # §7 [common]


# --------------------------------------------------------------------------- options, result

@dataclass(frozen=True)
class DemoOptions:
    cases: int = 20_000
    hospitals: int = 20
    seed: int = 1
    data_dir: Path = Path("var/demo")
    scheme_path: Path | None = None  # None: the sample scheme
    end_year: int = 2024
    serve: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    timeout: float = 1800.0  # seconds the pipeline may take to catch up, per wait


@dataclass
class DemoResult:
    """What the demo did: the test suite checks its invariants on this."""

    scheme: Scheme
    sample: bool
    data_dir: Path
    db_url: str
    lists_file: Path
    hospitals: list[Hospital]
    imported: dict[str, Any]
    calibration: CalibrationReport
    policy: Policy
    budget: Decimal
    simulation: SimulationReport
    monthly: list[Statement]
    clearing: Clearing
    grouped_share: Decimal
    flagged: int
    flags: list[tuple[str, str, str, int]] = field(default_factory=list)  # (level, rule, severity, count)
    flag_examples: list[tuple[str, str, str]] = field(default_factory=list)  # (rule, subject, message)
    special: list[SpecialCase] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    timings: list[tuple[str, float, int | None]] = field(default_factory=list)


@dataclass(frozen=True)
class SpecialCase:
    """One application of the demo's special-case round and what became of it."""

    application_id: int
    case_id: str
    hospital_code: str
    period: str
    reason: str
    figures: dict[str, Any]
    outcome: str
    amount: Decimal | None
    status: str
    prices: list[dict[str, Any]]  # every stored price of the case, oldest first

    @property
    def before(self) -> Decimal | None:
        return next((p["payment"] for p in reversed(self.prices) if not p["special_case"]), None)

    @property
    def after(self) -> Decimal | None:
        return self.prices[-1]["payment"] if self.prices else None


def resolve_scheme(option: Path | None, console: Console) -> tuple[Path, bool]:
    """The scheme folder given (--scheme-path or DRGDIP_SCHEME_PATH), else the bundled sample.

    A folder that is given but holds no scheme falls back to the sample too, loudly: a demo
    should run anywhere, but nobody may mistake the sample for the national scheme.
    """
    given = option
    if given is not None and (given / "scheme.json").is_file():
        return given, False
    why = f"no scheme at {given}" if given is not None else "no --scheme-path nor DRGDIP_SCHEME_PATH given"
    console.print(f"[bold yellow]{why}: using the bundled SAMPLE scheme ({SAMPLE_SCHEME.name}). "
                  "It is a sample, NOT FOR PAYMENT: pass --scheme-path …/schemes/chs-drg-1.1 for the "
                  "national CHS-DRG 1.1.[/]")
    return SAMPLE_SCHEME, True


# --------------------------------------------------------------------------- the pipeline

def embedded_runtime(scheme: Scheme, scheme_path: Path, db_path: Path) -> Runtime:
    """All five stages in one process on one SQLite file, grouping with `scheme` by default."""
    from drgdip.stages import build_runtime

    return build_runtime("all", bus="memory://", db=f"sqlite+aiosqlite:///{db_path}",
                         schemes_dir=scheme_path.resolve().parent, default_scheme=scheme.id,
                         dictionary_scheme=scheme_path, log_level="WARNING")


def stage(runtime: Runtime, name: str) -> Any:
    return next(s for s in runtime.stages if s.name == name)


async def reviewed_cases(runtime: Runtime) -> int:
    """Cases the read model holds as finished: reviewed, or withdrawn (4102)."""
    from services.gateway.repository import count_by_status

    async with runtime.engine.connect() as conn:
        by_status = await count_by_status(conn)
    return by_status.get("reviewed", 0) + by_status.get("withdrawn", 0)


async def pipeline_idle(runtime: Runtime) -> bool:
    """Every published event applied (or dead-lettered) by every consumer, every outbox empty.

    By the consumers' committed offsets, not by counting what the bus still holds: the bus
    drops what every group has committed (retention), so after a large import it holds far
    fewer events than were published."""
    bus = runtime.bus
    if not isinstance(bus, MemoryBus):
        raise TypeError("pipeline_idle needs the embedded (memory://) bus")
    if bus.unconsumed():
        return False
    async with runtime.engine.connect() as conn:
        for r in runtime.relays:
            if await conn.scalar(select(func.count()).select_from(r.outbox.table)):
                return False
    return not bus.unconsumed()  # nothing published while the outboxes were looked at


async def wait_for(check: Callable[[], Awaitable[int]], target: int, timeout: float, what: str,
                   on_progress: Callable[[int], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while (n := await check()) < target:
        if on_progress:
            on_progress(n)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} ({n} of {target})")
        await asyncio.sleep(0.25)
    if on_progress:
        on_progress(n)


async def wait_idle(runtime: Runtime, timeout: float) -> None:
    async def idle() -> int:
        return int(await pipeline_idle(runtime))
    await wait_for(idle, 1, timeout, "the pipeline to go idle")


# --------------------------------------------------------------------------- stored history

@dataclass(frozen=True)
class GroupedCase:
    """A stored case (latest list version) with its latest grouping, as the pricer sees it."""

    case_id: str
    event: CaseGrouped
    los: int | None

    @property
    def year(self) -> int | None:
        day = self.event.facts.discharge_date
        return None if day is None else day.year

    def history(self) -> HistoricalCase:
        """Calibration input (§6). Off-site insured patients were treated here: not excluded."""
        f = self.event.facts
        return HistoricalCase.model_validate({
            "case_id": self.case_id, "discharge_date": f.discharge_date, "hospital_code": f.hospital_code,
            "drg": self.event.drg, "adrg": self.event.adrg, "group_status": self.event.status,
            "cost": f.total_cost, "los": self.los, "withdrawn": f.withdrawn})

    def priced(self) -> CaseToPrice:
        """Pricing input, built exactly as the pricer builds it from the `case-grouped` event."""
        return case_to_price(self.case_id, self.event)


async def stored_grouped_cases(runtime: Runtime) -> list[GroupedCase]:
    """Every case in the grouper's store: its latest list version and that version's latest grouping."""
    from services.grouper.repository import latest_groupings

    async with runtime.engine.connect() as conn:
        stored = await latest_groupings(conn)
    return [GroupedCase(case_id, grouped, received.los) for case_id, received, grouped in stored]


# --------------------------------------------------------------------------- payment

def points_policy(scheme: Scheme, calibration: CalibrationReport, hospitals: list[Hospital], year: int,
                  point_value: Decimal) -> Policy:
    """A point-method policy (§7) for `year` with the calibrated weights and group means."""
    w = calibration.weights_document()
    return parse_policy({
        "format": "drgdip.pricing-policy/1", "policy_id": f"demo-{REGION}-{year}", "version": 1,
        "region": REGION, "valid_from": f"{year}-01-01", "valid_to": f"{year}-12-31", "method": "points",
        "scheme_id": scheme.id, "weights": w["weights"], "group_mean_costs": w["group_mean_costs"],
        "overall_mean_cost": w["overall_mean_cost"],
        "hospitals": {"level_coefficients": LEVEL_COEFFICIENTS, "levels": {h.code: h.level for h in hospitals}},
        "points": {"scale": 100, "provisional_point_value": str(point_value)},
        "notes": f"drgdip demo: weights calibrated on the synthetic region's {YEARS} years "
                 f"({':'.join(map(str, YEAR_WEIGHTS))}); budget {BUDGET_SHARE:%} of the last year's "
                 "fee-for-service cost. Not a real bureau's figures.",
    })


def write_region(gen: RegionGenerator, out: Path,
                 each: Callable[[dict[str, Any]], None] | None = None) -> list[HistoricalCase]:
    """Write the generated lists to `out` as JSON Lines (`each` sees every list on the way);
    their history (year, DRG, cost, LOS, hospital) for calibrating weights."""
    group = gen.scheme.grouper("raw")
    history: list[HistoricalCase] = []
    with out.open("wb", buffering=1 << 20) as fh:
        for i, sl in enumerate(gen):
            fh.write(orjson.dumps(sl) + b"\n")
            if each is not None:
                each(sl)
            s = sl["setlinfo"]
            history.append(HistoricalCase(
                case_id=str(i), year=int(s["setl_end_date"][:4]), drg=group(grouping_case(sl)).drg,
                cost=s["medfee_sumamt"], los=int(s["act_ipt_days"] or 0), hospital_code=s["fixmedins_code"]))
    return history


def region_policies(gen: RegionGenerator, history: list[HistoricalCase]) -> list[Policy]:
    """A point-method policy for each generated year, with weights calibrated on `history`, so
    that every case of the region is priced for real."""
    calibration = calibrate(history, CalibrationParams(region=REGION, year=gen.end_year + 1,
                                                       year_weights=YEAR_WEIGHTS))
    return [points_policy(gen.scheme, calibration, gen.hospitals, year, Decimal("10"))
            for year in range(gen.end_year - YEARS + 1, gen.end_year + 1)]


def point_budget(policy: Policy, budget: Decimal) -> Decimal:
    """What the points share at clearing: the budget less the reserve (调剂金), as settlement.py."""
    return to_fen(budget) - to_fen(to_fen(budget) * policy.settlement.reserve_share)


# --------------------------------------------------------------------------- the run

class Steps:
    """Progress bars on stderr and the timing of each step."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.timings: list[tuple[str, float, int | None]] = []

    @contextmanager
    def step(self, what: str, total: int | None = None, *, rate: bool = True) -> Iterator[TaskID]:
        """A progress bar for one step; its time (and cases/s when `rate`) goes to the summary."""
        task = self.progress.add_task(what, total=total)
        started = time.perf_counter()
        yield task
        if total is not None:
            self.progress.update(task, completed=total)
        else:
            self.progress.update(task, total=1, completed=1)
        self.timings.append((what, time.perf_counter() - started, total if rate else None))


async def run_demo(options: DemoOptions, *, console: Console | None = None, out: Console | None = None) -> DemoResult:
    """Run the whole demo; serves the gateway at the end when `options.serve`."""
    err = console or Console(stderr=True)
    out = out or Console(width=None if Console().is_terminal else 150)
    scheme_path, sample = resolve_scheme(options.scheme_path, err)
    scheme = load_scheme(scheme_path)
    data = options.data_dir
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("drgdip.db*"):  # every run starts from an empty region
        old.unlink()
    db_path = data / "drgdip.db"
    last_year = options.end_year
    steps = Steps(err)
    files: dict[str, Path] = {}

    runtime = embedded_runtime(scheme, scheme_path, db_path)
    with steps.progress:
        with steps.step(f"generating {YEARS} years of lists", options.cases) as task:
            gen = RegionGenerator(scheme, hospitals=options.hospitals, cases=options.cases, seed=options.seed,
                                  years=YEARS, end_year=last_year)
            files["lists"] = data / "region.jsonl"
            with files["lists"].open("wb", buffering=1 << 20) as fh:
                for n, lst in enumerate(gen, start=1):
                    fh.write(orjson.dumps(lst) + b"\n")
                    if n % 500 == 0:
                        steps.progress.update(task, completed=n)
            files["hospitals"] = data / "region.jsonl.hospitals.json"
            write_json(files["hospitals"], [h.to_dict() for h in gen.hospitals])

        await runtime.start()
        try:
            result = await _pipeline_and_payment(runtime, options, scheme, sample, gen, steps, files, err)
        except BaseException:
            await runtime.stop()
            raise
        result.timings = steps.timings
    print_summary(out, result)
    try:
        if options.serve:
            await serve(runtime, options, out)
    finally:
        await runtime.stop()
    return result


async def _pipeline_and_payment(runtime: Runtime, options: DemoOptions, scheme: Scheme, sample: bool,
                                gen: RegionGenerator, steps: Steps, files: dict[str, Path],
                                err: Console) -> DemoResult:
    from services.grouper.handlers import regroup
    from services.ingest.handlers import file_chunks, import_stream
    from services.pricer.repository import count_priced_cases
    from services.review.repository import count_flagged

    data, last_year, progress = options.data_dir, options.end_year, steps.progress

    # 2. import through ingest, then wait for the pipeline (grouper → pricer → review → gateway)
    with steps.step("importing (ingest, QC)", options.cases) as task:
        imported = await import_stream(stage(runtime, "ingest").service, file_chunks(files["lists"]), "jsonl",
                                       None, progress=lambda n: progress.advance(task, n))
    finished = imported["accepted"] + imported["withdrawn"]
    with steps.step("grouped, priced, reviewed", finished) as task:
        await wait_for(lambda: reviewed_cases(runtime), finished, options.timeout, "reviewed cases",
                       lambda n: progress.update(task, completed=n))
        await wait_idle(runtime, options.timeout)

    # 3. calibrate on the stored grouped history
    with steps.step("calibrating weights (1:2:7)") as task:
        stored = await stored_grouped_cases(runtime)
        calibration = calibrate([c.history() for c in stored], CalibrationParams(
            region=REGION, year=last_year + 1, year_weights=YEAR_WEIGHTS,
            weights_version=f"{REGION}-{last_year}-demo"))
        files["weights"] = data / f"weights-{REGION}-{last_year}.json"
        files["calibration"] = data / "calibration-report.json"
        write_json(files["weights"], calibration.weights_document())
        write_json(files["calibration"], calibration.to_dict())
        write_csv(data / "calibration-groups.csv", calibration.csv_rows())

    # 4. the policy, its budget, the simulation
    with steps.step("policy, budget, simulation"):
        draft = points_policy(scheme, calibration, gen.hospitals, last_year, Decimal("1"))
        year_cases = [c.priced() for c in stored if c.year == last_year and not c.event.facts.withdrawn]
        covered = [c for c in year_cases if select_policy([draft], c) is not None]
        fee_for_service = sum((p.total_cost for p in price_many(draft, covered) if p.case_type in DRG_PRICED),
                              Decimal("0"))
        budget = to_fen(fee_for_service * BUDGET_SHARE)
        # simulate at the point value of the point budget: the one the annual clearing confirms
        simulation = simulate(draft, covered, budget=point_budget(draft, budget))
        assert simulation.point_value is not None
        policy = draft.with_point_value(simulation.point_value)
        files["policy"] = data / f"policy-{policy.policy_id}.json"
        write_json(files["policy"], policy.to_document())
        write_json(data / "simulation.json", simulation.to_dict())
        files["simulation"] = data / "simulation-hospitals.csv"
        write_csv(files["simulation"], simulation.hospital_rows())
        write_csv(data / "simulation-drgs.csv", simulation.drg_rows())

    # 5. import it and re-price the last year in the pipeline (regrouping re-announces the cases)
    async with runtime.engine.begin() as conn:
        await import_policy(conn, files["policy"].read_bytes(), who="demo")
    with steps.step(f"re-pricing {last_year} under the policy", len(covered)) as task:
        await regroup(runtime.engine, stage(runtime, "grouper").outbox, scheme,
                      date_from=date(last_year, 1, 1), date_to=date(last_year, 12, 31))

        async def priced() -> int:
            async with runtime.engine.connect() as conn:
                return await count_priced_cases(conn, policy.policy_id)
        await wait_for(priced, len(covered), options.timeout, "re-priced cases",
                       lambda n: progress.update(task, completed=n))
        await wait_idle(runtime, options.timeout)

    # 6. settlement on the stored prices
    with steps.step(f"pre-settling {last_year} month by month", 12, rate=False) as task:
        monthly: list[Statement] = []
        for month in range(1, 13):
            async with runtime.engine.begin() as conn:
                monthly += await run_monthly_presettlement(conn, policy.policy_id, f"{last_year}-{month:02d}")
            progress.advance(task)
    with steps.step(f"clearing {last_year}"):
        async with runtime.engine.begin() as conn:
            clearing = await run_annual_clearing(conn, policy.policy_id, str(last_year), budget)
    files["statements"] = data / f"statements-{last_year}.csv"
    write_csv(files["statements"], [row for s in [*monthly, *clearing.statements()] for row in s.csv_rows()])
    files["clearing"] = data / f"clearing-{last_year}.json"
    write_json(files["clearing"], clearing.to_dict())

    # 7. what review found (the hospital-level rules ran after each pre-settlement), and a
    #    special-case round decided by the panel, the decisions priced again by the pricer
    with steps.step("monitoring flags, special cases"):
        await wait_idle(runtime, options.timeout)
        flag_counts, examples = await flags_found(runtime)
        special = await special_case_round(runtime, stored, last_year, gen.hospitals)
        await wait_idle(runtime, options.timeout)
        special = await with_prices(runtime, special)

    live = [c for c in stored if not c.event.facts.withdrawn]
    grouped = sum(c.event.status in GROUPED_STATUSES for c in live)
    async with runtime.engine.connect() as conn:
        flagged = await count_flagged(conn)
    files["database"] = data / "drgdip.db"
    return DemoResult(
        scheme=scheme, sample=sample, data_dir=data, db_url=str(runtime.settings.db), lists_file=files["lists"],
        hospitals=gen.hospitals, imported=imported, calibration=calibration, policy=policy, budget=budget,
        simulation=simulation, monthly=monthly, clearing=clearing,
        grouped_share=Decimal(grouped) / len(live) if live else Decimal("0"), flagged=flagged, flags=flag_counts,
        flag_examples=examples, special=special, files=files)


# --------------------------------------------------------------------------- review

async def flags_found(runtime: Runtime, per_rule: int = 1) -> tuple[list[tuple[str, str, str, int]],
                                                                     list[tuple[str, str, str]]]:
    """The flags standing (not superseded) per level, rule and severity, and the newest of each
    rule as an example: case ids (or the hospital and period) and the numbers that fired it."""
    from services.review.repository import count_flags, list_flags

    examples = []
    async with runtime.engine.connect() as conn:
        counts = await count_flags(conn)
        for rule in dict.fromkeys(rule for _l, rule, _s, _n in counts):
            for f in await list_flags(conn, rule=rule, limit=per_rule):
                subject = f["case_id"] or f"{f['hospital_code']} {f['period']}"
                examples.append((rule, subject, f["message"]))
    return counts, examples


ROUND = (  # the panel's decisions in the demo's round: (outcome, reason)
    ("pay_by_item", "按项目付费: 住院时间长, 费用合理"),
    ("adjust_standard", "调整支付标准: 取支付标准与实际费用之间"),
    ("reject", "不予单议: 费用与病情相符"),
)
SPECIAL_REASONS = ("long_stay", "high_cost", "icu_ventilation")


async def special_case_round(runtime: Runtime, stored: list[GroupedCase], year: int,
                             hospitals: list[Hospital]) -> list[SpecialCase]:
    """A special-case round (特例单议, §10) through review's own functions, as the gateway's
    routes call them: hospitals apply for eligible cases of `year` (the eligibility rules and the
    cap decide), the bureau registers a panel member not tied to those hospitals, the member
    decides; review publishes each decision and the pricer prices the approved cases again."""
    from services.gateway.repository import create_token
    from services.pricer.repository import priced_versions
    from services.review import special_cases as special
    from services.review.domain import special_cases as sc
    from services.review.domain.parameters import DEFAULTS
    from services.review.repository import case_figures_of

    review = stage(runtime, "review")
    async with runtime.engine.connect() as conn:
        in_force = await review.service.book.in_force(conn)
    # candidates: the year's longest and costliest stays, judged by review's eligibility rules
    year_cases = [c for c in stored if c.year == year and not c.event.facts.withdrawn]
    longest = sorted(year_cases, key=lambda c: -(c.los or 0))[:40]
    costliest = sorted(year_cases, key=lambda c: -(c.event.facts.total_cost or 0))[:40]
    costs = {c.case_id: c.event.facts.total_cost or Decimal(0) for c in year_cases}
    picked: list[tuple[str, str, str]] = []  # case, hospital, reason
    async with runtime.engine.connect() as conn:
        for c in {c.case_id: c for c in [*longest, *costliest]}.values():
            if len(picked) == len(ROUND):
                break
            row = await case_figures_of(conn, c.case_id)
            prices = await priced_versions(conn, c.case_id)
            if row is None or not prices or (prices[-1]["payment"] or 0) >= costs[c.case_id]:
                continue  # a hospital applies where the group's payment does not cover the cost
            case = sc.from_json(row["figures"])
            grounds = sc.grounds(case, (in_force.on(case.region, case.discharge_date) or DEFAULTS).params.special_cases)
            reason = next((r for r in SPECIAL_REASONS if sc.Reason(r) in grounds), None)
            if reason is not None:
                picked.append((c.case_id, case.hospital_code, reason))
    out: list[SpecialCase] = []
    applied: list[dict[str, Any]] = []
    for case_id, hospital, reason in picked:
        async with runtime.engine.begin() as conn:
            token_id, _token = await create_token(conn, "hospital", hospital, label="demo special case")
        try:
            async with runtime.engine.begin() as conn:
                applied.append(await special.apply(
                    conn, special.Who(f"token:{token_id}", "hospital", hospital), in_force, case_id,
                    sc.Reason(reason), "病情复杂, 申请特例单议", []))
        except DomainError:  # the quarter's cap is used up: the round goes on without it
            continue
    if not applied:
        return out
    tied_to = sorted({h.code for h in hospitals} - {a["hospital_code"] for a in applied})[:1]
    bureau = special.Who("demo", "bureau-admin")
    async with runtime.engine.begin() as conn:
        member, _token = await create_token(conn, "bureau-reviewer", label="demo panel member")
        for quarter in sorted({a["period"] for a in applied}):
            await special.register_member(conn, bureau, member, quarter, tied_to, True, "demo panel")
    who = special.Who(f"token:{member}", "bureau-reviewer")
    for a, (outcome, why) in zip(applied, ROUND, strict=False):
        amount = None
        if outcome == "adjust_standard":  # halfway between what the case is paid and what it cost
            async with runtime.engine.connect() as conn:
                paid = (await priced_versions(conn, a["case_id"]))[-1]["payment"] or Decimal(0)
            amount = to_fen((paid + costs[a["case_id"]]) / 2)
        async with runtime.engine.begin() as conn:
            decided = await special.decide(conn, review.outbox, who, a["id"],
                                           sc.DecisionInput(sc.Outcome(outcome), why, amount),
                                           f"special-case-{a['id']}")
        out.append(SpecialCase(a["id"], a["case_id"], a["hospital_code"], a["period"], a["reason"], a["figures"],
                               outcome, amount, decided["status"], []))
    return out



async def with_prices(runtime: Runtime, special: list[SpecialCase]) -> list[SpecialCase]:
    """The round's cases with every price the pricer stored for them, the decisions' included."""
    from dataclasses import replace

    from services.pricer.repository import priced_versions

    async with runtime.engine.connect() as conn:
        return [replace(s, prices=await priced_versions(conn, s.case_id)) for s in special]


async def serve(runtime: Runtime, options: DemoOptions, out: Console) -> None:
    """Serve the gateway of the running pipeline until Ctrl-C."""
    import uvicorn

    from services.gateway.repository import create_token

    async with runtime.engine.begin() as conn:
        _id, token = await create_token(conn, "bureau-admin", label="demo")
    base = f"http://{options.host}:{options.port}"
    out.print(f"\n[bold]Serving the region on {base}[/] (Ctrl-C to stop)")
    out.print(f"  dashboard     {base}/dashboard/  (sign in with the bureau token below)")
    out.print(f"  API docs      {base}/docs")
    out.print(f"  summary       {base}/api/v1/summary")
    out.print(f"  cases         {base}/api/v1/cases?limit=20")
    out.print(f"  bureau token  {token}")
    out.print(f"  e.g. curl -H 'authorization: Bearer {token}' {base}/api/v1/summary")
    # the runtime is already started: uvicorn must not run the app's lifespan a second time
    config = uvicorn.Config(runtime.app, host=options.host, port=options.port, log_level="warning", lifespan="off")
    await uvicorn.Server(config).serve()


# --------------------------------------------------------------------------- the summary

def _yuan(v: Decimal | str | None) -> str:
    return "" if v is None else f"{Decimal(v):,.2f}"


def print_summary(out: Console, r: DemoResult) -> None:
    sim, clr, cal, imp = r.simulation, r.clearing, r.calibration, r.imported
    out.print(f"\n[bold]drgdip demo[/]: region {REGION}, {len(r.hospitals)} hospitals, scheme {r.scheme.id}"
              + (" [bold yellow](SAMPLE scheme, not for payment)[/]" if r.sample else ""))

    t = Table(title="Timings")
    for c in ("step", "seconds", "per second"):
        t.add_column(c, justify="left" if c == "step" else "right")
    for what, seconds, items in r.timings:
        t.add_row(what, f"{seconds:.1f}", f"{items / seconds:,.0f}" if items and seconds > 0 else "")
    t.add_row("[bold]total[/]", f"{sum(s for _w, s, _n in r.timings):.1f}", "")
    out.print(t)

    rejected = Counter(p["problems"][0]["code"] for p in imp["rejections"])
    out.print(f"Lists: {imp['lines']:,} generated and imported, {imp['accepted']:,} accepted, "
              f"{imp['rejected']:,} rejected by QC"
              + (" (" + ", ".join(f"{code} {n}" for code, n in rejected.most_common(4)) + ")" if rejected else ""))
    out.print(f"入组率 (grouped share): {r.grouped_share:.2%}   review: {r.flagged:,} cases flagged "
              f"(monitoring flags below)")
    out.print(f"Calibration {cal.params.version}: {len(cal.groups)} DRGs from {cal.kept:,} of {cal.cases_in:,} "
              f"cases, RIV {cal.riv}, {len(cal.inversions)} weight inversions, "
              f"{sum(g.sparse for g in cal.groups)} sparse groups (ADRG mean)")
    out.print(f"Policy {r.policy.policy_id} v{r.policy.version} (点数法): budget ¥{_yuan(r.budget)} "
              f"({BUDGET_SHARE:%} of fee-for-service), reserve ¥{_yuan(clr.reserve)}, "
              f"CMI {sim.total.cmi}, point value {clr.point_value} yuan/point "
              f"(simulated {sim.point_value})")

    h = Table(title=f"{clr.year} per hospital: simulation (DRG vs 按项目) and annual clearing")
    cols = ("hospital", "level", "cases", "CMI", "DRG payment", "fee-for-service", "盈亏", "盈亏率",
            "cleared", "balance")
    for c in cols:
        h.add_column(c, justify="left" if c in ("hospital", "level") else "right")
    cleared = {x.hospital_code: x for x in clr.hospitals}
    names = {x.code: x for x in r.hospitals}
    total_cleared = sum((x.cleared for x in clr.hospitals), Decimal(0))
    for row in [*sim.hospitals, sim.total]:
        hc, hosp, pl = cleared.get(row.key), names.get(row.key), row.profit_loss
        is_total = row is sim.total
        h.add_row(
            "TOTAL" if is_total else row.key, hosp.level_name if hosp else "", f"{row.cases:,}",
            str(row.cmi or ""), _yuan(row.drg_payment), _yuan(row.fee_for_service),
            f"[{'green' if pl >= 0 else 'red'}]{_yuan(pl)}[/]",
            "" if row.profit_loss_ratio is None else f"{row.profit_loss_ratio:.1%}",
            _yuan(total_cleared) if is_total else _yuan(hc.cleared) if hc else "",
            _yuan(hc.balance) if hc else "")
    out.print(h)
    out.print("盈亏 = DRG payment − fee-for-service at the simulated point value; cleared = the year's "
              "payment after 结余留用、合理超支分担; balance = fund share − monthly pre-settlements "
              "(> 0 the bureau pays, < 0 the hospital refunds)")
    out.print(f"Clearing: Σ points amounts ¥{_yuan(clr.total_drg_amount)} + reserve ¥{_yuan(clr.reserve)} = "
              f"budget ¥{_yuan(clr.budget)}; reserve used for overspend sharing ¥{_yuan(clr.reserve_used)}")

    print_review(out, r)

    f = Table(title=f"Files in {r.data_dir}", show_header=False)
    for what, path in (("settlement lists", r.files["lists"]), ("weights", r.files["weights"]),
                       ("calibration report", r.files["calibration"]), ("policy", r.files["policy"]),
                       ("simulation", r.files["simulation"]), ("statements", r.files["statements"]),
                       ("clearing", r.files["clearing"]), ("database", r.files["database"])):
        f.add_row(what, str(path))
    out.print(f)


def print_review(out: Console, r: DemoResult) -> None:
    """The monitoring flags found (智能监控) and the special-case round (特例单议)."""
    t = Table(title="Monitoring flags (智能监控): case rules on every priced case, hospital rules after "
                    "each monthly pre-settlement")
    for c in ("level", "rule", "severity", "flags"):
        t.add_column(c, justify="right" if c == "flags" else "left")
    for level, rule, severity, n in r.flags:
        t.add_row(level, rule, severity, f"{n:,}")
    if not r.flags:
        t.add_row("", "none", "", "0")
    out.print(t)
    for rule, subject, message in r.flag_examples:
        out.print(f"  e.g. {rule} {subject}: {message}")

    s = Table(title="Special-case round (特例单议): hospitals apply, an untied panel member decides, "
                    "the pricer prices the case again")
    for c in ("application", "case", "hospital", "quarter", "reason", "outcome", "payment before",
              "payment after", "prices"):
        s.add_column(c, justify="right" if c.startswith(("payment", "prices", "application")) else "left",
                     no_wrap=c in ("case", "hospital"))
    for x in r.special:
        outcome = x.outcome + (f" ¥{_yuan(x.amount)}" if x.amount is not None else "")
        s.add_row(str(x.application_id), x.case_id, x.hospital_code, x.period, x.reason, outcome,
                  _yuan(x.before), _yuan(x.after), str(len(x.prices)))
    out.print(s if r.special else "Special-case round: no eligible case in the last year")
    out.print("payment after = the case's newest priced version (an approval is priced as a new version, "
              "which settlement reads; a rejection keeps the price); prices = the versions stored for the case")


# --------------------------------------------------------------------------- reference-case lists
# Lists built from the shared reference test cases (hospital, person and dates added). The
# pipeline tests build their lists with these; the demo itself uses the generator above.
