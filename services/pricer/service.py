"""Pricer service: prices every grouped case with the policy in force, announces `case-priced`.

The pricing and settlement rules are the pure core (`policy`, `pricing`, `settlement`); this
module stores policies (versioned, audited), priced cases and settlement statements, and
chooses the policy of the case's treatment region in force on its discharge date.

Every stored figure names the policy id, policy version and weights version that produced it,
and a recomputation is a new row, never an update (docs/domain.md §13): a case re-grouped or
re-priced under a new policy version gets a new `pricer_results` row, a settlement re-run gets
new statement versions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.pricer.calibration import HistoricalCase
from services.pricer.config import PricerSettings
from services.pricer.domain.dip_pricing import DipPolicy, price_dip_case, settlement_policy
from services.pricer.policy import Policy, PolicyError, parse_policy
from services.pricer.pricing import (
    DRG_PRICED,
    CaseType,
    Price,
    PricedCase,
    price_case,
    select_policy,
)
from services.pricer.settlement import (
    Clearing,
    HospitalYear,
    Statement,
    annual_clearing,
    hospital_totals,
    monthly_presettlement,
)
from shared.db import insert_many
from shared.dip import Catalogue
from shared.errors import DomainError
from shared.events import CASE_GROUPED, CaseGrouped, CasePriced, Envelope
from shared.messaging import Outbox
from shared.periods import InForce, Versions
from shared.runtime import Context, Stage

NAME = "pricer"
ACTOR_HEADER = "x-drgdip-actor"  # who changes a policy over HTTP (set by the gateway)
metadata = MetaData()
_Id = BigInteger().with_variant(Integer(), "sqlite")
policy_versions = Table(
    "pricer_policy_versions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("policy_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("region", String(32), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("method", String(8), nullable=False),
    Column("scheme_id", String(64), nullable=False),
    Column("weights_version", String(64), nullable=False),
    Column("document", Text, nullable=False),  # verbatim, as imported
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(100), nullable=False),
)
policy_audit = Table(
    "pricer_policy_audit", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("policy_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("who", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("what", Text, nullable=False),  # JSON: what the version is and changes
)
results = Table(
    "pricer_results", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("grouping_version", Integer, nullable=False),
    Column("drg", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("policy_id", String(64), nullable=True),
    Column("weight", Numeric(10, 4), nullable=True),
    Column("base_rate", Numeric(14, 2), nullable=True),
    Column("coefficient", Numeric(8, 4), nullable=True),
    Column("payment_standard", Numeric(14, 2), nullable=True),
    Column("priced_at", DateTime(timezone=True), nullable=False),
    Column("policy_version", Integer, nullable=True),
    Column("weights_version", String(64), nullable=True),
    Column("case_type", String(16), nullable=True),
    Column("hospital_code", String(32), nullable=True),
    Column("treatment_region", String(32), nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("total_cost", Numeric(14, 2), nullable=True),
    Column("payment", Numeric(14, 2), nullable=True),
    Column("fund_payment", Numeric(14, 2), nullable=True),
    Column("breakdown", Text, nullable=True),  # Price.to_dict(): every figure used
    Column("region", String(32), nullable=True),
    Column("los", Integer, nullable=True),
    Column("case_input", Text, nullable=True),  # the PricedCase: simulations re-price from it
    Column("method", String(8), nullable=True),  # drg | dip: how the case was paid
    Column("dip_group", Text, nullable=True),
)
dip_policies = Table(
    "pricer_dip_policies", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("policy_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("region", String(32), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("document", Text, nullable=False),  # verbatim, as imported
    Column("catalogue_id", String(64), nullable=False),
    Column("catalogue_version", Integer, nullable=False),
    Column("catalogue", Text, nullable=False),  # the catalogue document it prices with
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(100), nullable=False),
)
advances = Table(
    "pricer_advances", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("hospital_code", String(32), nullable=False),
    Column("year", String(4), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("granted_by", String(100), nullable=False),
    Column("note", Text, nullable=True),
)
statements = Table(
    "pricer_statements", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # monthly | annual
    Column("hospital_code", String(32), nullable=False),
    Column("period", String(7), nullable=False),  # "2024-03" | "2024"
    Column("version", Integer, nullable=False),
    Column("policy_id", String(64), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("weights_version", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

NO_POLICY = "NO_POLICY"
PRICED = "PRICED"


class PolicyConflict(PolicyError):
    """The policy version exists with another content, or is older than the stored one."""


class SettlementError(ValueError):
    """A settlement run cannot be done (unknown policy, bad period, nothing to clear)."""


# --- policies -----------------------------------------------------------------------------------

def _what(policy: Policy, document: bytes) -> str:
    return orjson.dumps({
        "region": policy.region, "valid_from": policy.valid_from.isoformat(),
        "valid_to": policy.valid_to.isoformat() if policy.valid_to else None,
        "method": policy.method, "scheme_id": policy.scheme_id,
        "weights_version": policy.weights.version, "weights": len(policy.weights.table),
        "notes": policy.notes, "sha256": hashlib.sha256(document).hexdigest(),
    }).decode()


def _is_new_version(kind: str, policy_id: str, version: int, stored: Sequence[Any],
                    same_content: Callable[[Any], bool]) -> bool:
    """Whether `version` is to be stored, given the stored versions (latest first): False when
    it is stored with the same content (re-importing is a no-op); `PolicyConflict` when it is
    stored with another content or older than the latest stored version."""
    row = next((r for r in stored if r.version == version), None)
    if row is not None:
        if same_content(row):
            return False
        raise PolicyConflict([("version", f"{kind} {policy_id} version {version} is already stored "
                                          "with another content: bump the version")])
    if stored and stored[0].version > version:
        raise PolicyConflict([("version", f"{kind} {policy_id} is at version {stored[0].version}: "
                                          "a new version must be higher")])
    return True


async def store_policy(conn: AsyncConnection, document: bytes, who: str = "cli") -> tuple[Policy, bool]:
    """Validate and store a policy version with its audit row; (policy, stored).

    Importing a version already stored with the same content is a no-op (stored = False), so a
    service can import its configured file at every start. The same version with another
    content, or a version older than the latest stored one, raises `PolicyConflict`.
    """
    policy = parse_policy(document)
    stored = (await conn.execute(
        select(policy_versions.c.version, policy_versions.c.document)
        .where(policy_versions.c.policy_id == policy.policy_id)
        .order_by(policy_versions.c.version.desc()))).all()
    if not _is_new_version("policy", policy.policy_id, policy.version, stored,
                           lambda row: parse_policy(row.document) == policy):
        return policy, False
    now = datetime.now(UTC)
    await conn.execute(insert(policy_versions).values(
        policy_id=policy.policy_id, version=policy.version, region=policy.region,
        valid_from=policy.valid_from, valid_to=policy.valid_to, method=policy.method,
        scheme_id=policy.scheme_id, weights_version=policy.weights.version,
        document=document.decode(), imported_at=now, imported_by=who))
    await conn.execute(insert(policy_audit).values(
        policy_id=policy.policy_id, version=policy.version, action="import", who=who, at=now,
        what=_what(policy, document)))
    return policy, True


async def import_policy(engine: AsyncEngine, document: bytes, who: str = "cli") -> Policy:
    """Store a policy version (one transaction); raises `PolicyError` naming the field."""
    async with engine.begin() as conn:
        policy, _stored = await store_policy(conn, document, who)
    return policy


# --- DIP policies (§7): each version stored with the catalogue it prices with -------------------

def _parse_dip(policy_bytes: bytes, catalogue_bytes: bytes) -> tuple[DipPolicy, Catalogue]:
    try:
        policy = DipPolicy.model_validate_json(policy_bytes)
    except ValidationError as e:
        raise PolicyError([(".".join(str(x) for x in err["loc"]) or "policy", err["msg"])
                           for err in e.errors()]) from None
    try:
        catalogue = Catalogue.from_document(orjson.loads(catalogue_bytes))
    except (ValidationError, ValueError) as e:
        raise PolicyError([("catalogue", str(e).splitlines()[0])]) from None
    return policy, catalogue


async def import_dip_policy(engine: AsyncEngine, policy_bytes: bytes, catalogue_bytes: bytes,
                            who: str = "cli") -> DipPolicy:
    """Store a DIP policy version with its catalogue (one transaction, audited).

    The same version with the same policy and catalogue is a no-op; with another content, or
    a version older than the latest stored one, it raises `PolicyConflict`.
    """
    policy, catalogue = _parse_dip(policy_bytes, catalogue_bytes)
    d = dip_policies.c
    async with engine.begin() as conn:
        stored = (await conn.execute(select(d.version, d.document, d.catalogue)
                                     .where(d.policy_id == policy.policy_id)
                                     .order_by(d.version.desc()))).all()
        if not _is_new_version("DIP policy", policy.policy_id, policy.version, stored, lambda row: _parse_dip(
                row.document.encode(), row.catalogue.encode()) == (policy, catalogue)):
            return policy
        now = datetime.now(UTC)
        await conn.execute(insert(dip_policies).values(
            policy_id=policy.policy_id, version=policy.version, region=policy.region,
            valid_from=policy.valid_from, valid_to=policy.valid_to, document=policy_bytes.decode(),
            catalogue_id=catalogue.catalogue_id, catalogue_version=catalogue.version,
            catalogue=catalogue_bytes.decode(), imported_at=now, imported_by=who))
        await conn.execute(insert(policy_audit).values(
            policy_id=policy.policy_id, version=policy.version, action="import", who=who, at=now,
            what=orjson.dumps({
                "method": "dip", "region": policy.region, "valid_from": policy.valid_from.isoformat(),
                "valid_to": policy.valid_to.isoformat() if policy.valid_to else None,
                "catalogue": catalogue.version_label, "groups": len(catalogue.groups),
                "sha256": hashlib.sha256(policy_bytes).hexdigest(),
                "catalogue_sha256": hashlib.sha256(catalogue_bytes).hexdigest()}).decode()))
    return policy


def policy_book() -> Versions[Policy]:
    """Stored DRG policy versions, each parsed once."""
    return Versions(policy_versions, "policy_id", lambda row: parse_policy(row.document))


def dip_book() -> Versions[tuple[DipPolicy, Catalogue]]:
    """Stored DIP policy versions with the catalogue each prices with, each parsed once."""
    return Versions(dip_policies, "policy_id",
                    lambda row: _parse_dip(row.document.encode(), row.catalogue.encode()))


# --- pricing ------------------------------------------------------------------------------------

def priced_case(case_id: str, g: CaseGrouped) -> PricedCase:
    """The pricing input from a `case-grouped` event.

    LOS is the number of days between admission and discharge (the list's own LOS was checked
    against the dates at intake); the innovative-drug amount is not carried (0: no add-on).
    """
    f = g.facts
    los = (f.discharge_date - f.admission_date).days if f.discharge_date and f.admission_date else None
    return PricedCase(
        case_id=case_id, hospital_code=f.hospital_code, region=f.region,
        treatment_region=f.treatment_region, insurance_type=f.insurance_type, drg=g.drg,
        group_status=g.status, los=los, total_cost=f.total_cost, fees=dict(f.fees),
        patient_share=f.patient_share, discharge_date=f.discharge_date,
    )


async def load_history(engine: AsyncEngine, region: str, first_year: int, last_year: int) -> list[HistoricalCase]:
    """Each case's latest priced row discharged in the years, as calibration input (§6).

    A withdrawn list is kept and marked (calibration excludes it and says so); a case the
    grouper could not group is passed on with its status, also to be excluded and counted.
    """
    r = results.c
    latest = select(func.max(r.id)).group_by(r.case_id).scalar_subquery()
    rows = (await _fetch(engine, select(
        r.case_id, r.hospital_code, r.drg, r.status, r.total_cost, r.los, r.discharge_date
    ).where(r.id.in_(latest), r.region == region, r.total_cost.is_not(None),
            r.discharge_date >= date(first_year, 1, 1), r.discharge_date <= date(last_year, 12, 31))))
    return [HistoricalCase(case_id=x.case_id, year=x.discharge_date.year, region=region,
                           hospital_code=x.hospital_code, drg=x.drg,
                           group_status="FAIL" if x.status == "NOT_GROUPED" else "SUCCESS",
                           cost=x.total_cost, los=x.los, withdrawn=x.status == "WITHDRAWN")
            for x in rows]


async def load_priced_cases(engine: AsyncEngine, region: str, year: int) -> list[PricedCase]:
    """The pricing inputs of the region's cases discharged in the year (latest row per case,
    withdrawn lists left out), for simulations and what-if runs (§9)."""
    r = results.c
    latest = select(func.max(r.id)).group_by(r.case_id).scalar_subquery()
    rows = await _fetch(engine, select(r.case_input).where(
        r.id.in_(latest), r.region == region, r.case_input.is_not(None), r.status != "WITHDRAWN",
        r.discharge_date >= date(year, 1, 1), r.discharge_date <= date(year, 12, 31)))
    return [PricedCase.model_validate_json(x.case_input) for x in rows]


async def _fetch(engine: AsyncEngine, query: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


def legacy_status(price: Price | None) -> str:
    """The `status` of `case-priced` (PRICED | NOT_GROUPED | NO_WEIGHT | NO_RATE | …)."""
    if price is None:
        return NO_POLICY
    return PRICED if price.case_type in DRG_PRICED else price.case_type.value.upper()


_PRICE_TEXT = {"case_id", "hospital_code", "drg", "policy_id", "weights_version", "method"}
_PRICE_OTHER = {"policy_version", "hospital_level", "offsite", "special_review"}


def price_from_dict(d: dict[str, Any]) -> Price:
    """Read back a stored `Price.to_dict()` (decimals were written as strings)."""
    values: dict[str, Any] = {}
    for f in fields(Price):
        v = d.get(f.name)
        if f.name == "case_type":
            v = CaseType(d["case_type"])
        elif f.name == "notes":
            v = tuple(v or ())
        elif f.name not in _PRICE_TEXT | _PRICE_OTHER and v is not None:
            v = Decimal(v)
        values[f.name] = v
    return Price(**values)


# --- settlement ---------------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^\d{4}$")


def _month_bounds(period: str) -> tuple[date, date]:
    m = _MONTH.match(period)
    if not m:
        raise SettlementError(f"period: {period!r} is not a YYYY-MM month")
    year, month = int(m[1]), int(m[2])
    return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)


def _year_bounds(year: str) -> tuple[date, date]:
    if not _YEAR.match(year):
        raise SettlementError(f"year: {year!r} is not a YYYY year")
    return date(int(year), 1, 1), date(int(year) + 1, 1, 1)


async def _period_prices(conn: AsyncConnection, policy_id: str, start: date, end: date) -> list[Price]:
    """The current price of every case discharged in [start, end) under `policy_id`.

    A case's current price is its latest row (latest list, grouping or policy version); cases
    whose current price is under another policy belong to that policy's settlement.
    """
    r = results.c
    latest = select(func.max(r.id)).group_by(r.case_id).scalar_subquery()
    rows = (await conn.execute(select(r.breakdown).where(
        r.id.in_(latest), r.policy_id == policy_id, r.breakdown.is_not(None),
        r.discharge_date >= start, r.discharge_date < end))).scalars().all()
    return [price_from_dict(orjson.loads(b)) for b in rows]


async def _next_version(conn: AsyncConnection, kind: str, period: str, policy_id: str) -> int:
    s = statements.c
    prev = await conn.scalar(select(func.max(s.version)).where(
        s.kind == kind, s.period == period, s.policy_id == policy_id))
    return (prev or 0) + 1


async def _store_statements(conn: AsyncConnection, items: list[Statement],
                            extra: dict[str, Any] | None = None) -> None:
    now = datetime.now(UTC)
    for st in items:
        doc = st.to_dict() | ({"clearing": extra} if extra else {})
        await conn.execute(insert(statements).values(
            kind=st.kind, hospital_code=st.hospital_code, period=st.period, version=st.version,
            policy_id=st.policy_id, policy_version=st.policy_version,
            weights_version=st.weights_version, document=orjson.dumps(doc).decode(), created_at=now))


async def _policy_for_settlement(conn: AsyncConnection, policy_id: str) -> Policy:
    policy = await policy_book().latest(conn, policy_id)
    if policy is None:
        # a DIP policy settles through the same engine, its scores standing in for weights
        dip = await dip_book().latest(conn, policy_id)
        if dip is None:
            raise SettlementError(f"policy_id: no policy {policy_id!r} is stored")
        return settlement_policy(*dip)
    return policy


async def run_monthly_presettlement(engine: AsyncEngine, policy_id: str, period: str) -> list[Statement]:
    """Pre-settle a month (§8) from the stored priced cases; stores a new statement version.

    Uses the latest stored version of the policy for the settlement parameters; the cases keep
    the prices (and versions) they were priced with.
    """
    start, end = _month_bounds(period)
    async with engine.begin() as conn:
        policy = await _policy_for_settlement(conn, policy_id)
        totals = hospital_totals(await _period_prices(conn, policy_id, start, end))
        version = await _next_version(conn, "monthly", period, policy_id)
        out = monthly_presettlement(policy, period, totals.values(), version=version)
        await _store_statements(conn, out)
    return out


async def _presettled(conn: AsyncConnection, policy_id: str, year: str) -> dict[str, Decimal]:
    """Σ pre-settled per hospital over the year's months, from each month's latest version."""
    s = statements.c
    rows = (await conn.execute(select(s.hospital_code, s.period, s.version, s.document).where(
        s.kind == "monthly", s.policy_id == policy_id, s.period.like(f"{year}-%")))).all()
    latest: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row.hospital_code, row.period)
        if key not in latest or row.version > latest[key].version:
            latest[key] = row
    out: dict[str, Decimal] = {}
    for (hospital, _period), row in latest.items():
        paid = Decimal(orjson.loads(row.document)["lines"]["presettled"])
        out[hospital] = out.get(hospital, Decimal("0")) + paid
    return out


async def record_advance(engine: AsyncEngine, hospital_code: str, year: str, amount: Decimal,
                         who: str = "cli", note: str | None = None) -> None:
    """A prepayment (预付金, §8) advanced to a hospital; the year's clearing nets it."""
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise SettlementError("amount: a positive amount in yuan with at most 2 decimals")
    async with engine.begin() as conn:
        await conn.execute(insert(advances).values(
            hospital_code=hospital_code, year=year, amount=amount, granted_at=datetime.now(UTC),
            granted_by=who, note=note))


async def run_annual_clearing(engine: AsyncEngine, policy_id: str, year: str,
                              budget: Decimal) -> Clearing:
    """Clear a year (§8) from the stored priced cases; stores a new annual statement version.

    Pre-settled amounts are the latest monthly statements of the year; the prepayment advances
    granted for the year are netted from each hospital's balance.
    """
    start, end = _year_bounds(year)
    async with engine.begin() as conn:
        policy = await _policy_for_settlement(conn, policy_id)
        totals = hospital_totals(await _period_prices(conn, policy_id, start, end))
        paid = await _presettled(conn, policy_id, year)
        advanced = {r.hospital_code: r.total for r in (await conn.execute(
            select(advances.c.hospital_code, func.sum(advances.c.amount).label("total"))
            .where(advances.c.year == year).group_by(advances.c.hospital_code))).all()}
        version = await _next_version(conn, "annual", year, policy_id)
        try:
            clearing = annual_clearing(
                policy, year, [HospitalYear(t, presettled=paid.get(h, Decimal("0")),
                                            advances=Decimal(advanced.get(h, 0)))
                               for h, t in totals.items()], budget, version=version)
        except ValueError as e:
            raise SettlementError(str(e)) from None
        summary = {k: v for k, v in clearing.to_dict().items() if k != "hospitals"}
        await _store_statements(conn, clearing.statements(), summary)
    return clearing


# --- pricing a grouped case -------------------------------------------------------------------

_RESULT_COLUMNS = tuple(c.name for c in results.columns if c.name != "id")


def price_grouped(case_id: str, g: CaseGrouped, policies: InForce[Policy],
                  dip_policies_: InForce[tuple[DipPolicy, Catalogue]]) -> tuple[dict[str, Any], CasePriced]:
    """The `pricer_results` row and the `case-priced` payload of a grouped case.

    The payment method is the treatment region's on the discharge date (§7): DIP when a DIP
    policy is in force and the grouper assigned a group of its catalogue, else DRG; off-site
    cases are priced by the treatment region's policy. A withdrawn list (4102) is kept in
    history and left out of settlement.
    """
    f = g.facts
    case = priced_case(case_id, g)
    dip = None if f.withdrawn else dip_policies_.on(case.where_treated, case.discharge_date)
    p: Price | None
    breakdown: dict[str, Any]
    extra: dict[str, Any] = {}
    if dip is not None and g.dip is not None and g.dip.catalogue_id == dip[1].catalogue_id:
        # priced by DIP at the provisional point value; the row and event have the DRG shape
        # (`DipPrice.to_price()`, so settlement treats both alike) plus the DIP figures
        dp = price_dip_case(dip[1], dip[0], g.dip.case)
        p = dp.to_price()
        breakdown = p.to_dict() | {"dip": dp.to_dict()}
        extra = dict(method="dip", dip_group=dp.group)
        figures: dict[str, Any] = dict(
            policy_id=p.policy_id, coefficient=p.coefficient, case_type=p.case_type.value,
            payment=p.total_payment, fund_payment=p.fund_payment)
    else:
        policy = None if f.withdrawn else select_policy(
            policies.all_on(case.where_treated, case.discharge_date), case)
        p = None if policy is None else price_case(policy, case)
        breakdown = p.to_dict() if p is not None else {}
        extra = dict(method="drg") if p is not None else {}
        # the columns of `pricer_results` and the fields of `case-priced` share these names;
        # payment includes the add-on, so fund payment = payment − patient share (§7)
        figures = {} if p is None else dict(
            policy_id=p.policy_id, weight=p.rw, base_rate=p.base_rate, coefficient=p.coefficient,
            payment_standard=p.payment_standard, case_type=p.case_type.value,
            payment=p.total_payment, fund_payment=p.fund_payment)
    status = "WITHDRAWN" if f.withdrawn else legacy_status(p)
    row = dict.fromkeys(_RESULT_COLUMNS) | dict(
        case_id=case_id, list_version=f.list_version, grouping_version=g.grouping_version,
        drg=g.drg, status=status, priced_at=datetime.now(UTC),
        policy_version=p.policy_version if p else None, weights_version=p.weights_version if p else None,
        hospital_code=f.hospital_code, treatment_region=case.where_treated,
        discharge_date=f.discharge_date, total_cost=case.total_cost, region=f.region, los=case.los,
        case_input=case.model_dump_json(),
        breakdown=orjson.dumps(breakdown).decode() if p is not None else None) | extra | figures
    return row, CasePriced(facts=f, drg=g.drg, status=status, breakdown=breakdown, **figures)


# --- the stage ----------------------------------------------------------------------------------

def _policy_error(e: PolicyError) -> DomainError:
    status, code = (409, "POLICY_VERSION_CONFLICT") if isinstance(e, PolicyConflict) else (422, "INVALID_POLICY")
    return DomainError(str(e), code=code, status=status, field=e.path, details=[{"field": path, "code": code, "message": msg} for path, msg in e.errors])


def _statement_row(row: Any) -> dict[str, Any]:
    return {"kind": row.kind, "hospital_code": row.hospital_code, "period": row.period,
            "version": row.version, "policy_id": row.policy_id,
            "policy_version": row.policy_version, "weights_version": row.weights_version,
            "created_at": row.created_at.isoformat(), "document": orjson.loads(row.document)}


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, PricerSettings) else PricerSettings()
    outbox = Outbox(NAME, metadata)
    policies_ = policy_book()
    dip_policies_ = dip_book()

    async def on_start() -> None:
        if settings.policy_file is not None:
            await import_policy(ctx.engine, Path(settings.policy_file).read_bytes(), who="settings")

    async def handle(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        policies, dips = await policies_.in_force(conn), await dip_policies_.in_force(conn)
        rows: list[dict[str, Any]] = []
        events: list[Envelope] = []
        for env in envs:
            g: CaseGrouped = env.typed_payload()
            row, payload = price_grouped(env.case_id, g, policies, dips)
            rows.append(row)
            events.append(Envelope.new(payload, case_id=env.case_id, correlation_id=env.correlation_id,
                                       producer=NAME))
        await insert_many(conn, results, rows)
        return events

    router = APIRouter(tags=["pricer"])

    @router.post("/policies", status_code=201)
    async def upload_policy(request: Request, response: Response) -> dict:
        """Import a policy version (bureau only: the gateway protects this route)."""
        who = request.headers.get(ACTOR_HEADER) or "api"
        try:
            async with ctx.engine.begin() as conn:
                policy, stored = await store_policy(conn, await request.body(), who)
        except PolicyError as e:
            raise _policy_error(e) from None
        if not stored:
            response.status_code = 200
        return {"policy_id": policy.policy_id, "version": policy.version, "region": policy.region,
                "weights_version": policy.weights.version, "weights": len(policy.weights.table),
                "stored": stored}

    @router.post("/dip/policies", status_code=201)
    async def upload_dip_policy(body: dict[str, Any], request: Request) -> dict:
        """Import a DIP policy version with the catalogue it prices with: {"policy", "catalogue"}."""
        for key in ("policy", "catalogue"):
            if not isinstance(body.get(key), dict):
                raise DomainError(f"{key}: required (a JSON object)", code="INVALID_POLICY", status=422, field=key)
        try:
            dip = await import_dip_policy(ctx.engine, orjson.dumps(body["policy"]), orjson.dumps(body["catalogue"]),
                                          who=request.headers.get(ACTOR_HEADER) or "api")
        except PolicyError as e:
            raise _policy_error(e) from None
        except (ValueError, TypeError) as e:  # the catalogue document
            raise DomainError(f"catalogue: {e}"[:500], code="INVALID_CATALOGUE", status=422, field="catalogue") from None
        return {"policy_id": dip.policy_id, "version": dip.version, "region": dip.region}

    @router.get("/policies")
    async def list_policies() -> dict:
        v = policy_versions.c
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(select(
                v.policy_id, v.version, v.region, v.valid_from, v.valid_to, v.method,
                v.weights_version, v.imported_at, v.imported_by).order_by(v.policy_id, v.version))).all()
        return {"policies": [{**r._asdict(), "valid_from": r.valid_from.isoformat(),
                              "valid_to": r.valid_to.isoformat() if r.valid_to else None,
                              "imported_at": r.imported_at.isoformat()} for r in rows]}

    @router.get("/statements")
    async def list_statements(hospital: str, period: str | None = None) -> dict:
        """Every stored settlement statement version of a hospital (optionally one period)."""
        s = statements.c
        q = select(statements).where(s.hospital_code == hospital)
        if period:
            q = q.where(s.period == period)
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(q.order_by(s.period, s.kind, s.version))).all()
        return {"statements": [_statement_row(r) for r in rows]}

    return Stage(NAME, metadata, outbox, router=router,
                 subscriptions=[((CASE_GROUPED,), handle)], on_start=on_start)
