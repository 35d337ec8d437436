"""The bureau's reports and the hospital performance evaluation (docs/domain.md §8, §10, §12, §14).

Reports (`/api/v1/reports/…`), each as a printable HTML page (`format=html`, the default), CSV,
XLSX or JSON, rendered one way (domain/reports.py) from the same rows:

- `feedback`: a hospital's 月度反馈, built now from the indicator aggregates, its statement (the
  pricer), its list quality (ingest) and its flags by rule; `feedback/issued`: the ones stored
  when the month was pre-settled (`period-settled`), as they were issued;
- `bulletin`: the data working group's quarterly bulletin (bureau roles), also stored by
  `drgdip report bulletin` (scheduled, deploy/k8s/base/report-bulletin-cronjob.yaml);
- `special-cases`: review's half-yearly publication in the same formats;
- `standards`: one group's payment standard under two policies (two regions or two versions).

Performance evaluation (`/api/v1/evaluations`): compute and store a quarter's or a year's
scores with the region's parameter version in force; adopting a yearly evaluation sends each
hospital's deposit return share to the pricer (relayed route `/deposit-returns`), which its
next annual clearing of that year applies.

Routes here gather upstream figures before they open a connection of their own (the embedded
SQLite engine has one, which the upstream routes need).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway import repository
from services.gateway.domain import indicators as ind
from services.gateway.domain import performance as perf
from services.gateway.domain import reports as rep
from services.gateway.domain.auth import BUREAU_ROLES, Principal
from services.gateway.endpoints import (
    XLSX,
    Caller,
    Gateway,
    The,
    _answer,
    _headers,
    _only,
    _read,
    _record,
    attachment,
)
from shared.csvexport import to_csv
from shared.errors import DomainError, Forbidden, Invalid, NotFound
from shared.web import Engine
from shared.xlsxexport import to_xlsx

router = APIRouter(prefix="/api/v1", tags=["reports"])
FORMATS = ("html", "csv", "xlsx", "json")


def render(report: rep.Report, fmt: str, name: str) -> Response:
    """The report in one of `FORMATS` (the CSV and XLSX: the same table)."""
    if fmt == "html":
        return Response(rep.render_html(report), media_type="text/html; charset=utf-8")
    if fmt == "json":
        return Response(orjson.dumps(report.to_dict()), media_type="application/json")
    columns, rows = rep.table(report)
    if fmt == "csv":
        return Response(to_csv(columns, rows), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": attachment(f"{name}.csv")})
    return Response(to_xlsx(columns, rows, sheet=report.kind), media_type=XLSX,
                    headers={"content-disposition": attachment(f"{name}.xlsx")})


def _format(request: Request) -> str:
    fmt = request.query_params.get("format") or "html"
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}", code="INVALID_FIELD", field="format")
    return fmt


def _required(request: Request, name: str, max_length: int = 32) -> str:
    value = request.query_params.get(name) or ""
    if not value or len(value) > max_length:
        raise Invalid(f"{name} is required (at most {max_length} characters)", code="INVALID_FIELD", field=name)
    return value


def _months(period: str, field: str, kinds: str) -> list[str]:
    try:
        months = ind.months_of(period)
    except ValueError as e:
        raise Invalid(str(e), code="INVALID_FIELD", field=field) from None
    n = {"month": 1, "quarter": 3, "quarter or year": None}[kinds]
    if n is not None and len(months) != n:
        raise Invalid(f"{field} must be a {kinds}", code="INVALID_FIELD", field=field)
    if n is None and len(months) == 1:
        raise Invalid(f"{field} must be a quarter (YYYYQn) or a year (YYYY)", code="INVALID_FIELD", field=field)
    return months


def _own_hospital(who: Principal, hospital: str) -> None:
    if not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own reports", code="HOSPITAL_MISMATCH", field="hospital")


async def _get(gw: Gateway, who: Principal, upstream: str, path: str, params: dict[str, str]) -> Any:
    """An upstream's JSON answer to a read; None when it has nothing (404) or refuses."""
    r = await gw.upstreams.relay(upstream, "GET", path, b"", _headers(who), params=params)
    return orjson.loads(bytes(r.body)) if r.status_code == 200 else None


# ---------------------------------------------------------------- monthly feedback (月度反馈)

async def feedback_figures(conn: AsyncConnection, hospital: str, month: str) -> dict[str, Any]:
    """The gateway's own figures of a hospital's month: its row, the region's, its groups, its
    flags by rule (from the indicator aggregates)."""
    own = await repository.indicator_sums(conn, [month], None, ("region", "scheme_id", "drg"), hospital=hospital)
    region = own[0]["region"] if own else None
    region_cells = await repository.indicator_sums(conn, [month], region, ("scheme_id", "drg")) if region else []
    rows, total = ind.summarise(own, region_cells, None, None)
    groups, _ = ind.summarise(own, region_cells, None, "group")
    rules = await repository.indicator_rule_counts(conn, [month], None, hospital=hospital)
    return {"region": region, "own": rows[0] if rows else None, "total": total,
            "groups": [{"drg": g["key"]} | {k: g[k] for k, _ in rep.GROUP_COLUMNS if k != "drg"} for g in groups],
            "rules": rules}


def statement_lines(statements: Any, month: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The latest monthly statement version of a month (its lines) and what it is."""
    docs = [s for s in (statements or {}).get("statements") or [] if s.get("kind") == "monthly"
            and s.get("period") == month]
    if not docs:
        return None, {}
    last = max(docs, key=lambda s: s["version"])
    return last["document"]["lines"], {"结算单版本": last["version"], "政策": last["policy_id"]}


def feedback_report(hospital: str, month: str, figures: Mapping[str, Any], quality: Any,
                    lines: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> rep.Report:
    return rep.monthly_feedback(hospital, month, figures["own"], figures["total"], figures["groups"],
                                figures["rules"], (quality or {}).get("scores") or [], lines, meta)


@router.get("/reports/feedback", response_class=Response)
async def feedback(request: Request, gw: The, who: Caller, engine: Engine) -> Response:
    """A hospital's monthly feedback (月度反馈) built now: `hospital`, `month` (YYYY-MM),
    `format` (html | csv | xlsx | json). A hospital gets its own only."""
    _only(request, "hospital", "month", "format")
    hospital, month, fmt = _required(request, "hospital"), _required(request, "month", 7), _format(request)
    _months(month, "month", "month")
    _own_hospital(who, hospital)
    quality = await _get(gw, who, "ingest", "/quality", {"month": month, "hospital": hospital})
    lines, meta = statement_lines(await _get(gw, who, "pricer", "/statements", {"hospital": hospital,
                                                                                 "period": month}), month)
    async with engine.connect() as conn:
        figures = await feedback_figures(conn, hospital, month)
    return render(feedback_report(hospital, month, figures, quality, lines, meta), fmt,
                  f"drgdip-feedback-{hospital}-{month}")


@router.get("/reports/feedback/issued", response_class=Response)
async def issued_feedback(request: Request, who: Caller, engine: Engine) -> Response:
    """The monthly feedback as issued after the month's pre-settlement: without `version` the list
    of issues (`format=json`); with it, that issue in any format."""
    _only(request, "hospital", "month", "version", "format")
    hospital, fmt = _required(request, "hospital"), _format(request)
    _own_hospital(who, hospital)
    month = request.query_params.get("month")
    version_text = request.query_params.get("version")
    if version_text is not None and not version_text.isdigit():
        raise Invalid("version must be a positive integer", code="INVALID_FIELD", field="version")
    async with engine.connect() as conn:
        rows = await repository.stored_reports(conn, "feedback", hospital, month,
                                               int(version_text) if version_text else None)
    if version_text is None or month is None:
        return Response(orjson.dumps({"issued": [
            {k: r[k] for k in ("scope", "period", "version", "issued_by")} | {"issued_at": r["issued_at"].isoformat()}
            for r in rows]}), media_type="application/json")
    if not rows:
        raise NotFound(f"no feedback v{version_text} of {hospital} for {month}", code="REPORT_NOT_FOUND",
                       field="version")
    report = rep.Report.from_dict(orjson.loads(rows[0]["document"]))
    return render(report, fmt, f"drgdip-feedback-{hospital}-{month}-v{version_text}")


# ---------------------------------------------------------------- quarterly bulletin (数据工作组季度通报)

async def bulletin_report(gw: Gateway, who: Principal, engine: Any, region: str, quarter: str,
                          budget: Decimal | None) -> rep.Report:
    months = _months(quarter, "quarter", "quarter")
    execution = await _get(gw, who, "pricer", "/indicators/budget", {"region": region, "year": quarter[:4]}) or {}
    async with engine.connect() as conn:
        region_cells = await repository.indicator_sums(conn, months, region, ("scheme_id", "drg"))
        by_hospital = await repository.indicator_sums(conn, months, region, ("hospital_code", "hospital_level",
                                                                             "scheme_id", "drg"))
        by_level = await repository.indicator_sums(conn, months, region, ("hospital_level", "scheme_id", "drg"))
    hospitals, total = ind.summarise(by_hospital, region_cells, None, "hospital")
    level_of = {c["hospital_code"]: c["hospital_level"] for c in by_hospital}
    levels, _ = ind.summarise(by_level, region_cells, None, "level")
    fees = {code: sum((Decimal(c[f"fee_{code}_sum"] or 0) for c in region_cells), Decimal(0))
            for code in ind.FEE_ITEMS}
    in_quarter = [m for m in execution.get("months") or [] if m.get("period") in months]
    presettled = sum((Decimal(m["presettled"]) for m in in_quarter), Decimal(0))
    year_total = sum((Decimal(m["presettled"]) for m in execution.get("months") or []
                      if m.get("period", "") <= months[-1]), Decimal(0))
    point_values = [m.get("provisional_point_value") for m in in_quarter if m.get("provisional_point_value")]
    fund = {"budget": None if budget is None else str(budget), "presettled": str(presettled),
            "fund_due": str(sum((Decimal(m["fund_due"]) for m in in_quarter), Decimal(0))),
            "presettled_year": str(year_total),
            "execution_rate": ind.ratio(year_total, budget) if budget else None,
            "point_value": point_values[-1] if point_values else None}
    return rep.quarterly_bulletin(region, quarter, fund, fees,
                                  [h | {"level": level_of.get(h["key"], 0)} for h in hospitals], levels, total)


def _budget(request: Request) -> Decimal | None:
    text = request.query_params.get("budget")
    if text is None:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")) or len(text) > 20:
        raise Invalid("budget is a positive amount in yuan, at most 2 decimals", code="INVALID_FIELD", field="budget")
    return value


@router.get("/reports/bulletin", response_class=Response)
async def bulletin(request: Request, gw: The, who: Caller, engine: Engine) -> Response:
    """The data working group's quarterly bulletin (bureau roles): `region`, `quarter` (YYYYQn),
    `budget` (the year's, yuan; optional), `format`."""
    who.require(*BUREAU_ROLES)
    _only(request, "region", "quarter", "budget", "format")
    region, quarter, fmt = _required(request, "region"), _required(request, "quarter", 6), _format(request)
    report = await bulletin_report(gw, who, engine, region, quarter.upper(), _budget(request))
    return render(report, fmt, f"drgdip-bulletin-{region}-{quarter}")


@router.post("/reports/bulletin:issue", status_code=201)
async def issue_bulletin(request: Request, gw: The, who: Caller, engine: Engine) -> dict:
    """Build the quarter's bulletin and store it as issued (bureau-admin; the scheduled run,
    deploy/k8s/base/report-bulletin-cronjob.yaml): the same query as the bulletin, no format."""
    who.require("bureau-admin")
    _only(request, "region", "quarter", "budget")
    region, quarter = _required(request, "region"), _required(request, "quarter", 6).upper()
    report = await bulletin_report(gw, who, engine, region, quarter, _budget(request))
    async with engine.begin() as conn:
        version = await repository.save_report(conn, "bulletin", region, quarter,
                                               orjson.dumps(report.to_dict()).decode(), who.actor)
    await _record(engine, request, who, "report.issued", f"bulletin {region} {quarter}", {"version": version})
    return {"kind": "bulletin", "region": region, "quarter": quarter, "version": version}


@router.get("/reports/bulletin/issued", response_class=Response)
async def issued_bulletin(request: Request, who: Caller, engine: Engine) -> Response:
    """A stored bulletin as issued (`region`, `quarter`, `version`, `format`; bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request, "region", "quarter", "version", "format")
    region, quarter, fmt = _required(request, "region"), _required(request, "quarter", 6).upper(), _format(request)
    version = request.query_params.get("version") or ""
    if not version.isdigit():
        raise Invalid("version must be a positive integer", code="INVALID_FIELD", field="version")
    async with engine.connect() as conn:
        rows = await repository.stored_reports(conn, "bulletin", region, quarter, int(version))
    if not rows:
        raise NotFound(f"no bulletin v{version} of {region} {quarter}", code="REPORT_NOT_FOUND", field="version")
    return render(rep.Report.from_dict(orjson.loads(rows[0]["document"])), fmt,
                  f"drgdip-bulletin-{region}-{quarter}-v{version}")


# ---------------------------------------------------------------- special cases and standards

@router.get("/reports/special-cases", response_class=Response)
async def special_cases(request: Request, gw: The, who: Caller) -> Response:
    """The half-yearly special-case publication (`half=2024H1`) as a report; a hospital sees
    its own row."""
    _only(request, "half", "format")
    half, fmt = _required(request, "half", 6), _format(request)
    params = {"half": half, "format": "json"} | ({} if who.is_bureau else {"hospital": who.hospital_code or ""})
    r = await gw.upstreams.relay("review", "GET", "/special-cases/publication", b"", _headers(who), params=params)
    if r.status_code != 200:
        return r
    answer = orjson.loads(bytes(r.body))
    rows = answer.get("rows") if isinstance(answer, dict) else answer
    scope = "全区" if who.is_bureau else (who.hospital_code or "")
    return render(rep.special_case_publication(half, scope, rows or []), fmt, f"drgdip-special-cases-{half}")


def _policy_ref(request: Request, name: str) -> dict[str, str]:
    """`policy_id` or `policy_id:version`."""
    ref = _required(request, name, 72)
    policy_id, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise Invalid(f"{name} is policy_id or policy_id:version", code="INVALID_FIELD", field=name)
    return {"policy_id": policy_id} | ({"version": version} if version else {})


@router.get("/reports/standards", response_class=Response)
async def standards(request: Request, gw: The, who: Caller) -> Response:
    """A group's payment standard under two policies (`left`, `right`: `policy_id[:version]`,
    two regions or two versions) per hospital level, with the difference in yuan and % (bureau
    roles). Per hospital level only: never a per-doctor figure (§12)."""
    who.require(*BUREAU_ROLES)
    _only(request, "drg", "left", "right", "format")
    drg, fmt = _required(request, "drg"), _format(request)
    sides = []
    for name in ("left", "right"):
        r = await gw.upstreams.relay("pricer", "GET", "/standards", b"", _headers(who),
                                     params=_policy_ref(request, name) | {"drg": drg})
        if r.status_code != 200:
            err = _answer(r).get("error") or {}
            raise DomainError(f"{name}: {err.get('message') or 'refused'}", code=str(err.get("code") or "INVALID_FIELD"),
                              field=name, status=r.status_code)
        sides.append(_answer(r))
    return render(rep.standards_comparison(drg, sides[0], sides[1]), fmt, f"drgdip-standards-{drg}")


# ---------------------------------------------------------------- performance evaluation (绩效评价)

async def evaluate(gw: Gateway, who: Principal, engine: Any, region: str, period: str) -> dict[str, Any]:
    """Compute a region's quarter or year and store it: every hospital's components and score."""
    months = _months(period, "period", "quarter or year")
    quarters = [f"{period[:4]}Q{q}" for q in range(1, 5)] if len(months) == 12 else [period]
    confirmed: dict[str, int] = {}
    for q in quarters:
        offset = 0
        while True:
            page = await _get(gw, who, "review", "/flags", {"status": "confirmed", "period": q, "limit": "1000",
                                                            "offset": str(offset)}) or {}
            flags = page.get("flags") or []
            for f in flags:
                if f.get("case_id"):
                    confirmed[f["hospital_code"]] = confirmed.get(f["hospital_code"], 0) + 1
            if len(flags) < 1000:
                break
            offset += 1000
    lists: dict[str, tuple[int, int]] = {}
    for m in months:
        for s in (await _get(gw, who, "ingest", "/quality", {"month": m}) or {}).get("scores") or []:
            n, ok = lists.get(s["hospital"], (0, 0))
            lists[s["hospital"]] = (n + int(s["lists"]), ok + int(s["passed"]))
    async with engine.begin() as conn:
        cells = await repository.indicator_sums(conn, months, region, ("hospital_code", "hospital_level"))
        version, doc = await repository.evaluation_parameters_for(conn, region, period[:4])
        params = perf.DEFAULT if doc is None else perf.parse_parameters(orjson.loads(doc))
        inputs = [perf.Inputs(
            c["hospital_code"], int(c["hospital_level"]), int(c["cases"]), int(c["grouped"]),
            Decimal(c["weight_sum"]), int(c["weighted"]), int(c["high_outliers"]) + int(c["low_outliers"]),
            int(c["special_cases"]), int(c["readmissions_31"]), Decimal(c["cost_sum"]), Decimal(c["own_pay_sum"]),
            *lists.get(c["hospital_code"], (0, 0)), confirmed.get(c["hospital_code"], 0)) for c in cells]
        scores = perf.evaluate(_one_level_each(inputs), params)
        document = {"region": region, "period": period, "parameters_version": version,
                    "parameters": params.to_dict(), "hospitals": [s.to_dict() for s in scores]}
        evaluation_id = await repository.save_evaluation(conn, region, period, version,
                                                         orjson.dumps(document).decode(), who.actor)
    return {"evaluation_id": evaluation_id, "evaluated_by": who.actor} | document


def _one_level_each(inputs: list[perf.Inputs]) -> list[perf.Inputs]:
    """A hospital's cells of several levels (its level changed) summed under its main level."""
    by: dict[str, list[perf.Inputs]] = {}
    for i in inputs:
        by.setdefault(i.hospital_code, []).append(i)
    out = []
    for code, parts in by.items():
        main = max(parts, key=lambda p: p.cases)
        summed = {f: sum((getattr(p, f) for p in parts), type(getattr(main, f))())
                  for f in ("cases", "grouped", "weight_sum", "weighted", "outliers", "special_cases",
                            "readmissions_31", "cost_sum", "own_pay_sum")}
        out.append(replace(main, hospital_code=code, **summed))
    return out


def _evaluation_view(row: Mapping[str, Any], who: Principal) -> dict[str, Any]:
    doc = orjson.loads(row["document"])
    if not who.is_bureau:  # a hospital: its own scores only
        doc["hospitals"] = [h for h in doc["hospitals"] if h["hospital_code"] == who.hospital_code]
    return {"evaluation_id": row["id"], "evaluated_at": row["evaluated_at"].isoformat(),
            "evaluated_by": row["evaluated_by"],
            "adopted_at": row["adopted_at"].isoformat() if row["adopted_at"] else None} | doc


@router.post("/evaluations", status_code=201)
async def run_evaluation(request: Request, gw: The, who: Caller, engine: Engine) -> dict:
    """Compute and store a performance evaluation (bureau-admin; audited): body `{"region",
    "period"}` (YYYYQn or YYYY)."""
    who.require("bureau-admin")
    _only(request)
    body = _object(await _read(request, gw.upstreams))
    region, period = _text_field(body, "region", 32), _text_field(body, "period", 6).upper()
    result = await evaluate(gw, who, engine, region, period)
    await _record(engine, request, who, "evaluation.computed", f"{region} {period}",
                  {"evaluation_id": result["evaluation_id"], "parameters_version": result["parameters_version"]})
    return result


@router.get("/evaluations")
async def list_evaluations(request: Request, who: Caller, engine: Engine) -> dict:
    """Stored evaluations (`region`, `period`), oldest first; a hospital sees its own scores."""
    _only(request, "region", "period")
    q = request.query_params
    async with engine.connect() as conn:
        rows = await repository.list_evaluations(conn, q.get("region"), q.get("period"))
    return {"evaluations": [_evaluation_view(r, who) for r in rows]}


@router.post("/evaluations/{evaluation_id}/adopt")
async def adopt_evaluation(evaluation_id: Annotated[int, Path(ge=1, le=2**53)], request: Request, gw: The, who: Caller, engine: Engine) -> dict:
    """Adopt a yearly evaluation (bureau-admin; audited): each hospital's deposit return share
    goes to the pricer, whose annual clearing of that year returns the quality deposit by it."""
    who.require("bureau-admin")
    _only(request)
    async with engine.connect() as conn:
        rows = await repository.list_evaluations(conn, None, None, evaluation_id)
    if not rows:
        raise NotFound(f"no evaluation {evaluation_id}", code="EVALUATION_NOT_FOUND", field="evaluation_id")
    doc = orjson.loads(rows[0]["document"])
    if len(doc["period"]) != 4:
        raise Invalid("only a yearly evaluation sets the quality deposit", code="NOT_A_YEAR", field="evaluation_id")
    body = {"year": doc["period"], "evaluation_id": str(evaluation_id),
            "hospitals": {h["hospital_code"]: {"score": h["score"], "deposit_return_share": h["deposit_return_share"]}
                          for h in doc["hospitals"]}}
    r = await gw.upstreams.relay("pricer", "POST", "/deposit-returns", orjson.dumps(body),
                                 _headers(who) | {"x-drgdip-actor": who.actor})
    if r.status_code >= 300:
        err = _answer(r).get("error") or {}
        raise DomainError(str(err.get("message") or "refused"), code=str(err.get("code") or "UPSTREAM_REFUSED"),
                          field=err.get("field"), status=r.status_code)
    async with engine.begin() as conn:
        await repository.adopt_evaluation(conn, evaluation_id, who.actor)
    await _record(engine, request, who, "evaluation.adopted", str(evaluation_id), {"year": doc["period"]})
    return {"evaluation_id": evaluation_id, "year": doc["period"], "hospitals": len(body["hospitals"])}


@router.post("/evaluation-parameters", status_code=201)
async def store_parameters(request: Request, gw: The, who: Caller, engine: Engine) -> dict:
    """Store a new version of a region's evaluation parameters (bureau-admin; audited): body
    `{"region", "valid_from": "YYYY", "parameters": {"components": {name: {weight, full, zero}},
    "deposit_full_score", "deposit_zero_score"}}`; components left out keep their defaults."""
    who.require("bureau-admin")
    _only(request)
    body = _object(await _read(request, gw.upstreams))
    region, valid_from = _text_field(body, "region", 32), _text_field(body, "valid_from", 4)
    if not valid_from.isdigit():
        raise Invalid("valid_from is a year, YYYY", code="INVALID_FIELD", field="valid_from")
    params = perf.parse_parameters(body.get("parameters"))
    async with engine.begin() as conn:
        version = await repository.save_evaluation_parameters(conn, region, valid_from,
                                                              orjson.dumps(params.to_dict()).decode(), who.actor)
    await _record(engine, request, who, "evaluation.parameters", region, {"version": version, "valid_from": valid_from})
    return {"region": region, "version": version, "valid_from": valid_from, "parameters": params.to_dict()}


@router.get("/evaluation-parameters")
async def show_parameters(request: Request, who: Caller, engine: Engine) -> dict:
    """The parameters in force for a region's year (`region`, `year`): the defaults (version 0)
    when none is stored."""
    _only(request, "region", "year")
    region, year = _required(request, "region"), _required(request, "year", 4)
    async with engine.connect() as conn:
        version, doc = await repository.evaluation_parameters_for(conn, region, year)
    params = perf.DEFAULT if doc is None else perf.parse_parameters(orjson.loads(doc))
    return {"region": region, "year": year, "version": version, "parameters": params.to_dict()}


def _object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise Invalid("the body must be a JSON object", code="INVALID_BODY", field="body")
    return doc


def _text_field(body: Mapping[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise Invalid(f"{name} is required (text, at most {max_length} characters)", code="INVALID_FIELD", field=name)
    return value
