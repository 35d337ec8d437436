"""Review's tables and every query on them. Takes the caller's connection; never commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review.domain.hospital_rules import (
    LOW_OUTLIER,
    CaseFigure,
    Counts,
    HospitalFlag,
    Period,
)
from services.review.domain.parameters import RuleParameters, RuleSet, parse_rules
from services.review.domain.review import Announcement, Reviewed, stay_of, where_treated
from services.review.domain.rules import Share, make_share
from services.review.domain.workflow import (
    CONFIRMED,
    DISMISSED,
    LIVE,
    OPEN,
    SUPERSEDED,
    FlagState,
    Stored,
)
from shared.db import (
    ROW_ID,
    ExactDecimal,
    Versions,
    insert_many,
    money,
    update_many,
    upsert_many,
)
from shared.errors import Conflict
from shared.events import CaseFacts, CaseFlag

NAME = "review"
metadata = MetaData()
stays = Table(
    "review_stays", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("psn_key", String(64), nullable=False),
    Column("hospital_code", String(32), nullable=False),
    Column("admission_date", Date, nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("drg", String(8), nullable=False),
    Column("facts", Text, nullable=False),  # the stay's CaseFacts, to re-announce it later
    # JSON: how it was priced (method, adrg, dip_group) and what it added to the regional
    # figures ("shares": {key: [cost, own_pay]}, one case each; older rows: share_key, share)
    Column("context", Text, nullable=True),
    # what the hospital-level rules read of the case's latest price (NULL region: a stay stored
    # before review kept figures)
    Column("region", String(32), nullable=True),  # where care was given
    Column("hospital_level", Integer, nullable=True),
    Column("weight", ExactDecimal(12, 4), nullable=True),
    Column("case_type", String(16), nullable=True),
    Column("discharge_way", Integer, nullable=True),
    Column("planned", Boolean, nullable=True),
    Column("withdrawn", Boolean, nullable=True),
    # what the special-case review judges an application on (NULL figures: none kept)
    Column("method", String(8), nullable=True),  # drg | dip
    Column("complex", Boolean, nullable=True),  # counts in its hospital's complex-case load
    # JSON: the CaseData's figures that the other columns and the facts do not hold (KEPT_FIGURES;
    # older rows: the whole CaseData), made whole again by `case_figures`
    Column("figures", Text, nullable=True),
    Index("ix_review_stays_person", "psn_key", "hospital_code"),  # readmissions
    Index("ix_review_stays_region", "region", "discharge_date"),
)
results = Table(
    "review_results", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("list_version", Integer, nullable=False),
    Column("review_version", Integer, nullable=False),
    Column("flags", Text, nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
    Column("rules", String(64), nullable=True),  # the parameters used: "<region> v<n>" | "default"
)
# every flag of every review, kept: a new review of a case supersedes its open flags. A flag is
# a case's (`level` "case") or a hospital's for a period (`level` "hospital", no case id); its
# workflow (domain/workflow.py): answered by the hospital, decided by the bureau.
flags = Table(
    "review_flags", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=True),
    Column("review_version", Integer, nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("rule", String(40), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("related_case_id", String(100), nullable=True),
    Column("message", Text, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON
    Column("rules", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # open | answered | confirmed | dismissed | superseded
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("level", String(8), nullable=False, server_default="case"),  # case | hospital
    Column("hospital_code", String(32), nullable=True),
    Column("region", String(32), nullable=True),  # where care was given: whose calendar applies
    Column("period", String(7), nullable=True),  # YYYY-MM (a case: its discharge month) | YYYYQn
    Column("answer", Text, nullable=True),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("answered_by", String(128), nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(128), nullable=True),
    Column("deduction", money(), nullable=True),
    Index("ix_review_flags_case", "case_id", "status"),
    Index("ix_review_flags_rule", "rule", "status"),
    Index("ix_review_flags_hospital", "hospital_code", "period"),
)
# Append-only (domain/workflow.py): every answer and decision, who, when, before, after, why.
flag_events = Table(
    "review_flag_events", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("flag_id", ROW_ID, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(16), nullable=False),  # answered | decided
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=True),
    Column("hospital_code", String(32), nullable=True),
    Column("before", Text, nullable=False),  # JSON: the flag's workflow state
    Column("after", Text, nullable=False),
    Column("reason", Text, nullable=True),  # the answer, or the decision's reason
    Index("ix_review_flag_events_flag", "flag_id"),
    Index("ix_review_flag_events_at", "at"),
)
# every run of the hospital-level rules: what it looked at and what it found
hospital_runs = Table(
    "review_hospital_runs", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("period", String(7), nullable=False),
    Column("rules", String(64), nullable=False),
    Column("cases", Integer, nullable=False),
    Column("hospitals", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("raised", Integer, nullable=False),
    Column("superseded", Integer, nullable=False),
    Column("trigger", String(64), nullable=False),  # command | api | settlement <policy> v<n>
    Column("run_at", DateTime(timezone=True), nullable=False),
    Index("ix_review_hospital_runs_period", "region", "period"),
)
# a group's regional self-pay figures (cost shifting): changed by increments, so concurrent
# consumers never lose each other's updates
group_shares = Table(
    "review_group_shares", metadata,
    # "<region>|<drg|dip>|<group>", "<region>|<drg|dip>|adrg:<ADRG>" (self-pay: cases with a 自费
    # amount) and "<region>|drg|<DRG>|level:<level>" (cost at a hospital level): domain/review.py
    Column("share_key", String(140), primary_key=True),
    Column("cases", Integer, nullable=False),
    Column("total_cost", money(), nullable=False),
    Column("own_pay", money(), nullable=False),
)
rule_versions = Table(
    "review_rule_versions", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("rules_id", String(64), nullable=False),  # "review-<region>"
    Column("region", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("document", Text, nullable=False),  # resolved: every parameter
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(100), nullable=False),
    UniqueConstraint("rules_id", "version", name="uq_review_rule_versions"),
    Index("ix_review_rule_versions_region", "region", "valid_from"),
)


class Known(dict[str, Reviewed]):
    """The stored stays (by case id) of a batch's people and cases; `reviewed`: those with a
    stored review (a stay and its review are written together)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: set[str] = set()
        self.reviewed: set[str] = set()


async def load_known(conn: AsyncConnection, psn_keys: Collection[str], case_ids: Collection[str]) -> Known:
    """The stays of these people and these cases, with their latest reviews."""
    known = Known()
    for r in (await conn.execute(select(stays).where(or_(
            stays.c.psn_key.in_(psn_keys), stays.c.case_id.in_(case_ids))))).all():
        facts = CaseFacts.model_validate_json(r.facts)
        ctx = orjson.loads(r.context) if r.context else {}
        stay = stay_of(r.case_id, facts, ctx.get("method", "drg"),
                       ctx.get("adrg", r.drg[:3] if len(r.drg) == 4 else None), ctx.get("dip_group"))
        added = dict(ctx.get("shares") or {})
        if ctx.get("share_key") and ctx.get("share"):  # written before the ADRG and level figures
            added[ctx["share_key"]] = ctx["share"]
        known[r.case_id] = Reviewed(stay, r.drg, facts, shares={
            key: Share(1, Decimal(cost), Decimal(own)) for key, (cost, own) in added.items()})
    known.stored = set(known)
    for r in (await conn.execute(select(results).where(results.c.case_id.in_(known.stored)))).all():
        k = known[r.case_id]
        k.list_version, k.review_version = r.list_version, r.review_version
        k.flags = [CaseFlag.model_validate(d) for d in orjson.loads(r.flags)]
        known.reviewed.add(r.case_id)
    return known


def _flags_json(flags: list[CaseFlag]) -> str:
    return orjson.dumps([f.model_dump() for f in flags]).decode() if flags else "[]"


def _context(k: Reviewed) -> str:
    return orjson.dumps({"method": k.stay.method, "adrg": k.stay.adrg, "dip_group": k.stay.dip_group,
                         "shares": {key: [str(a.cost), str(a.own_pay)] for key, a in k.shares.items()}}).decode()


# the columns of a priced case's stay besides its key, person, dates, DRG, facts and context
FIGURES = ("region", "hospital_level", "weight", "case_type", "discharge_way", "planned", "withdrawn",
           "method", "complex", "figures")
_STAY = ("case_id", "psn_key", "hospital_code", "admission_date", "discharge_date", "drg", "facts", "context")


async def save(conn: AsyncConnection, changed: Mapping[str, Reviewed], known: Known,
               announcements: Sequence[Announcement] = (),
               facts_json: Mapping[str, tuple[CaseFacts, str]] | None = None,
               figures: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Store the changed stays and their reviews: one statement per table and kind of write.
    Each review's flags go to the history (`review_flags`): the open flags of the cases
    reviewed again are superseded, the latest review's flags are open. `facts_json`: the JSON
    of facts the caller has already (by case id, with the facts it is of), stored as it is.
    `figures`: the `FIGURES` columns of the cases priced (by case id), stored with their stays;
    a stored stay without them (reviewed again because an earlier stay arrived) is unchanged
    and not written again."""
    now = datetime.now(UTC)
    rules = {a.case_id: a.rules for a in announcements}
    given = facts_json or {}
    priced = figures or {}
    with_figures: list[dict] = []
    without: list[dict] = []
    new_results: list[dict] = []
    old_results: list[dict] = []
    for cid, k in changed.items():
        columns = priced.get(cid)
        if columns is not None or cid not in known.stored:
            raw = given.get(cid)
            s = dict(case_id=cid, psn_key=k.stay.psn_key, hospital_code=k.stay.hospital_code,
                     admission_date=k.stay.admission_date, discharge_date=k.stay.discharge_date, drg=k.drg,
                     facts=raw[1] if raw is not None and raw[0] is k.facts else k.facts.model_dump_json(),
                     context=_context(k))
            if columns is None:
                without.append(s)
            else:
                s.update(columns)
                with_figures.append(s)
        r = dict(case_id=cid, list_version=k.list_version, review_version=k.review_version,
                 flags=_flags_json(k.flags), reviewed_at=now, rules=rules.get(cid))
        (old_results if cid in known.reviewed else new_results).append(r)
    await save_stays(conn, with_figures)
    await save_stays(conn, without)
    await insert_many(conn, results, new_results)
    await update_many(conn, results, "case_id", old_results)
    await _save_flags(conn, announcements, now, known.reviewed)


async def save_stays(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store stays (dicts with the same keys: the key and any other columns), each replacing the
    stored row's columns it has (one statement; the last row of a case wins)."""
    latest = list({r["case_id"]: r for r in rows}.values())
    if not latest:
        return
    await upsert_many(conn, stays, "case_id", latest)


async def _save_flags(conn: AsyncConnection, announcements: Sequence[Announcement], now: datetime,
                      stored: Collection[str]) -> None:
    """`stored`: the cases with a stored review (only they can have flags to supersede: a review
    and its flags are written together)."""
    if not announcements:
        return
    again = {a.case_id for a in announcements if a.case_id in stored}
    if again:
        await conn.execute(update(flags).where(flags.c.case_id.in_(again), flags.c.status.in_(LIVE))
                           .values(status=SUPERSEDED, closed_at=now))
    last = {a.case_id: i for i, a in enumerate(announcements)}
    rows = [dict(case_id=a.case_id, review_version=a.review_version, list_version=a.facts.list_version,
                 rule=f.rule, severity=f.severity, related_case_id=f.related_case_id, message=f.message,
                 evidence=orjson.dumps(f.evidence).decode(), rules=a.rules,
                 status=OPEN if last[a.case_id] == i else SUPERSEDED, raised_at=now,
                 closed_at=None if last[a.case_id] == i else now, level="case",
                 hospital_code=a.facts.hospital_code, region=where_treated(a.facts),
                 period=a.facts.discharge_date.strftime("%Y-%m") if a.facts.discharge_date else None)
            for i, a in enumerate(announcements) for f in a.flags]
    await insert_many(conn, flags, rows)


# --- regional self-pay figures --------------------------------------------------------------------

async def load_shares(conn: AsyncConnection, keys: Collection[str]) -> dict[str, Share]:
    if not keys:
        return {}
    rows = (await conn.execute(select(group_shares).where(group_shares.c.share_key.in_(keys)))).all()
    return {key: make_share(cases, cost, own) for key, cases, cost, own in rows}


async def save_share_deltas(conn: AsyncConnection, deltas: Mapping[str, Share]) -> None:
    """Add each group's change to its figures (a row made where missing): one statement."""
    changed = sorted((k, d) for k, d in deltas.items() if d != Share())
    if not changed:
        return
    await upsert_many(conn, group_shares, "share_key", [
        {"share_key": k, "cases": d.cases, "total_cost": d.cost, "own_pay": d.own_pay} for k, d in changed],
        add=("cases", "total_cost", "own_pay"))


# --- rule parameters ------------------------------------------------------------------------------

def rules_id(region: str) -> str:
    return f"review-{region}"


def rule_book() -> Versions[RuleSet]:
    """Stored review-rule versions, each parsed once."""
    return Versions(rule_versions, "rules_id",
                    lambda row: RuleSet(row.region, row.version, parse_rules(row.document.encode())))


async def latest_rules(conn: AsyncConnection, region: str) -> dict[str, Any] | None:
    """The region's latest stored version: version, period and resolved document."""
    v = rule_versions.c
    r = (await conn.execute(select(rule_versions).where(v.region == region)
                            .order_by(v.version.desc()).limit(1))).first()
    return None if r is None else r._asdict()


async def insert_rules(conn: AsyncConnection, region: str, version: int, valid_from: date,
                       valid_to: date | None, params: RuleParameters, who: str) -> None:
    await conn.execute(insert(rule_versions).values(
        rules_id=rules_id(region), region=region, version=version, valid_from=valid_from,
        valid_to=valid_to, document=orjson.dumps(params.to_document()).decode(),
        imported_at=datetime.now(UTC), imported_by=who))


async def list_rules(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every stored version (region, version, period, who, when), oldest first per region."""
    v = rule_versions.c
    rows = (await conn.execute(select(v.region, v.version, v.valid_from, v.valid_to, v.imported_at,
                                      v.imported_by).order_by(v.region, v.version))).all()
    return [{**r._asdict(), "valid_from": r.valid_from.isoformat(),
             "valid_to": r.valid_to.isoformat() if r.valid_to else None,
             "imported_at": r.imported_at.isoformat()} for r in rows]


async def open_flags(conn: AsyncConnection, case_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The open flags (of these cases), with their evidence."""
    q = select(flags).where(flags.c.status == "open")
    if case_ids is not None:
        q = q.where(flags.c.case_id.in_(case_ids))
    rows = (await conn.execute(q.order_by(flags.c.id))).all()
    return [{**r._asdict(), "evidence": orjson.loads(r.evidence)} for r in rows]


async def count_flagged(conn: AsyncConnection) -> int:
    """Cases whose latest review raised at least one flag."""
    return int(await conn.scalar(select(func.count()).select_from(results)
                                 .where(results.c.flags != "[]")) or 0)


async def count_flags(conn: AsyncConnection) -> list[tuple[str, str, str, int]]:
    """(level, rule, severity, flags) over every flag not superseded."""
    c = flags.c
    rows = (await conn.execute(select(c.level, c.rule, c.severity, func.count()).where(c.status != SUPERSEDED)
                               .group_by(c.level, c.rule, c.severity).order_by(c.level, c.rule, c.severity))).all()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


# --- what the hospital-level rules read -----------------------------------------------------------

async def load_hospital_figures(conn: AsyncConnection, region: str, start: date, end: date) -> list[CaseFigure]:
    """The region's cases (not withdrawn) discharged in [start, end), one by one (the rules read
    `hospital_counts`; its sums are tested against `count_periods` of these)."""
    c = stays.c
    rows = (await conn.execute(select(c.case_id, c.hospital_code, c.discharge_date, c.admission_date, c.psn_key,
                                      c.hospital_level, c.drg, c.weight, c.case_type, c.discharge_way,
                                      c.planned).where(
        c.region == region, c.discharge_date >= start, c.discharge_date < end,
        c.withdrawn.is_(False)))).all()
    return [CaseFigure(r.case_id, r.hospital_code, r.discharge_date, r.admission_date, r.psn_key,
                       r.hospital_level, r.drg, r.weight, r.case_type, r.discharge_way, r.planned)
            for r in rows]


def _days_before(conn: AsyncConnection, day: Any, days: int) -> Any:
    """`day` − `days` days, in the database's own date arithmetic."""
    if conn.dialect.name == "postgresql":
        return day - literal(days, Integer())  # date − integer is a date
    return func.date(day, f"-{days} days")  # SQLite keeps dates as YYYY-MM-DD text


async def hospital_counts(conn: AsyncConnection, region: str, periods: Sequence[Period], *,
                          readmission_days: int, high_rw: Decimal) -> dict[Period, dict[str, Counts]]:
    """Each hospital's figures per period (`Counts`), summed in the database over the region's
    cases (not withdrawn) discharged in `periods` (of one kind, not overlapping): one row per
    hospital, period and discharge way. A case is a readmission when the same person was
    discharged from the same hospital (a case of the region, not withdrawn) at most
    `readmission_days` days before its admission, and neither list says it was planned."""
    out: dict[Period, dict[str, Counts]] = {p: {} for p in periods}
    if not periods:
        return out
    c, e = stays.alias("c").c, stays.alias("e")
    period = case(*[(and_(c.discharge_date >= p.start, c.discharge_date < p.end), literal(p.label))
                    for p in periods], else_=None).label("period")
    earlier = select(literal(1)).select_from(e).where(
        e.c.psn_key == c.psn_key, e.c.hospital_code == c.hospital_code, e.c.region == c.region,
        e.c.case_id != c.case_id, e.c.withdrawn.is_(False), e.c.planned.is_(False),
        e.c.discharge_date <= c.admission_date, e.c.discharge_date <= c.discharge_date,
        e.c.discharge_date >= _days_before(conn, c.admission_date, readmission_days))
    readmitted = and_(c.planned.is_(False), c.admission_date.is_not(None), c.psn_key != "", earlier.exists())

    def count_if(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    q = (select(c.hospital_code, period, c.discharge_way, func.count().label("cases"),
                count_if(and_(func.length(c.drg) == 4, func.substr(c.drg, 4, 1).in_(("1", "3")))).label("mcc_cc"),
                func.count(c.weight).label("weighted"),
                type_coerce(func.sum(c.weight), ExactDecimal(20, 4)).label("weight"),
                type_coerce(func.sum(c.weight * c.weight), ExactDecimal(30, 8)).label("weight_sq"),
                count_if(c.weight >= high_rw).label("high_rw"),
                count_if(c.case_type == LOW_OUTLIER).label("low_outliers"),
                count_if(readmitted).label("readmissions"),
                func.max(c.hospital_level).label("level"))
         .where(c.region == region, c.withdrawn.is_(False), c.discharge_date >= min(p.start for p in periods),
                c.discharge_date < max(p.end for p in periods))
         .group_by(c.hospital_code, period, c.discharge_way))
    by_label = {p.label: p for p in periods}
    for r in (await conn.execute(q)).all():
        if r.period is None:
            continue
        k = Counts(int(r.cases), int(r.mcc_cc), int(r.weighted), r.weight or Decimal(0), r.weight_sq or Decimal(0),
                   int(r.high_rw), {} if r.discharge_way is None else {int(r.discharge_way): int(r.cases)},
                   int(r.low_outliers), int(r.readmissions), None if r.level is None else int(r.level))
        hospitals = out[by_label[r.period]]
        hospitals[r.hospital_code] = hospitals[r.hospital_code].add(k) if r.hospital_code in hospitals else k
    return out


async def regions_with_cases(conn: AsyncConnection, start: date, end: date) -> list[str]:
    c = stays.c
    return sorted((await conn.execute(select(c.region).distinct().where(
        c.region.is_not(None), c.discharge_date >= start, c.discharge_date < end))).scalars())


# --- hospital-level flags and the flag workflow ---------------------------------------------------

def _flag_dict(r: Any) -> dict[str, Any]:
    return {**r._asdict(), "evidence": orjson.loads(r.evidence)}


async def record_run(conn: AsyncConnection, region: str, period: str, rules: str, cases: int, hospitals: int,
                     flags_found: int, raised: int, superseded: int, trigger: str) -> None:
    await conn.execute(insert(hospital_runs).values(
        region=region, period=period, rules=rules, cases=cases, hospitals=hospitals, flags=flags_found,
        raised=raised, superseded=superseded, trigger=trigger[:64], run_at=datetime.now(UTC)))


async def hospital_flags_of(conn: AsyncConnection, region: str, period: str) -> list[Stored]:
    """The hospital-level flags of a region and period, every status."""
    c = flags.c
    rows = (await conn.execute(select(c.id, c.hospital_code, c.rule, c.status, c.evidence).where(
        c.level == "hospital", c.region == region, c.period == period))).all()
    return [Stored(r.id, r.hospital_code or "", r.rule, r.status, orjson.loads(r.evidence)) for r in rows]


async def raise_hospital_flags(conn: AsyncConnection, region: str, rules: str, raised: Sequence[HospitalFlag],
                               supersede: Sequence[int]) -> list[int]:
    """Store a run's new hospital-level flags (open) and supersede the open ones it replaces."""
    now = datetime.now(UTC)
    if supersede:
        await conn.execute(update(flags).where(flags.c.id.in_(supersede), flags.c.status == OPEN)
                           .values(status=SUPERSEDED, closed_at=now))
    ids = []
    for r in raised:
        ids.append(int((await conn.execute(insert(flags).values(
            case_id=None, review_version=1, list_version=1, rule=r.rule, severity=r.severity,
            related_case_id=None, message=r.message, evidence=orjson.dumps(r.evidence).decode(),
            rules=rules, status=OPEN, raised_at=now, level="hospital", hospital_code=r.hospital_code,
            region=region, period=r.period).returning(flags.c.id))).scalar_one()))
    return ids


async def list_flags(conn: AsyncConnection, *, hospital: str | None = None, rule: str | None = None,
                     status: str | None = None, period: str | None = None, level: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Flags, newest first, filtered; superseded flags only when asked for by status. A quarter
    (YYYYQn) matches the quarter's hospital-level flags and every flag of its months."""
    c = flags.c
    q = select(flags)
    if hospital is not None:
        q = q.where(c.hospital_code == hospital)
    if rule is not None:
        q = q.where(c.rule == rule)
    q = q.where(c.status == status) if status is not None else q.where(c.status != SUPERSEDED)
    if period is not None:
        months = _months_of(period)
        q = q.where(or_(c.period == period, c.period.in_(months)) if months else c.period == period)
    if level is not None:
        q = q.where(c.level == level)
    rows = (await conn.execute(q.order_by(c.id.desc()).limit(limit).offset(offset))).all()
    return [_flag_dict(r) for r in rows]


def _months_of(period: str) -> list[str]:
    if len(period) == 6 and period[4] == "Q" and period[5] in "1234":
        first = 3 * int(period[5]) - 2
        return [f"{period[:4]}-{m:02d}" for m in range(first, first + 3)]
    return []


async def get_flag(conn: AsyncConnection, flag_id: int, *, for_update: bool = False) -> dict[str, Any] | None:
    q = select(flags).where(flags.c.id == flag_id)
    if for_update:
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    return None if r is None else _flag_dict(r)


async def save_flag_state(conn: AsyncConnection, state: FlagState, before: FlagState, action: str,
                          actor: str, role: str | None, reason: str | None) -> None:
    """Store a flag's new workflow state and append its audit record. The update holds only when
    the flag is still in the state it was read in (a concurrent step makes it a 409)."""
    closed = state.decided_at if state.status in (CONFIRMED, DISMISSED) else None
    done = await conn.execute(update(flags).where(flags.c.id == state.flag_id, flags.c.status == before.status)
                              .values(status=state.status, answer=state.answer, answered_at=state.answered_at,
                                      answered_by=state.answered_by, decision_reason=state.decision_reason,
                                      decided_at=state.decided_at, decided_by=state.decided_by,
                                      deduction=state.deduction, closed_at=closed))
    if not done.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"flag {state.flag_id} changed meanwhile: read it again", code="FLAG_CHANGED",
                       field="flag_id")
    await conn.execute(insert(flag_events).values(
        flag_id=state.flag_id, at=state.answered_at if action == "answered" else state.decided_at,
        action=action, actor=actor[:128], role=role, hospital_code=state.hospital_code,
        before=orjson.dumps(before.public()).decode(), after=orjson.dumps(state.public()).decode(),
        reason=reason))


async def flag_history(conn: AsyncConnection, *, flag_id: int | None = None, hospital: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Audit records of the flag workflow, oldest first."""
    e = flag_events.c
    q = select(flag_events)
    if flag_id is not None:
        q = q.where(e.flag_id == flag_id)
    if hospital is not None:
        q = q.where(e.hospital_code == hospital)
    if since is not None:
        q = q.where(e.at >= since)
    if until is not None:
        q = q.where(e.at < until)
    q = q.order_by(e.at, e.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [{**r._asdict(), "before": orjson.loads(r.before), "after": orjson.loads(r.after)}
            for r in (await conn.execute(q)).all()]


# === special-case review (特例单议, docs/domain.md §10) ===========================================
# What review knows of each priced case for an application (its latest priced version: the
# `method`, `complex` and `figures` columns of review_stays), the applications, the panel's decisions, the members, one counter row per region and quarter (the
# lock that keeps the cap under concurrent applications) and the append-only audit.

special_quota = Table(
    "review_special_quota", metadata,
    Column("region", String(32), primary_key=True),
    Column("period", String(6), primary_key=True),
    Column("applications", Integer, nullable=False),
)
special_cases = Table(
    "review_special_cases", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False, unique=True),
    Column("hospital_code", String(32), nullable=False),
    Column("region", String(32), nullable=False),
    Column("period", String(6), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON: [{name, sha256, size}]
    Column("figures", Text, nullable=False),  # JSON: the numbers that made it eligible
    Column("status", String(12), nullable=False),  # pending | decided | appealed | final
    Column("outcome", String(16), nullable=True),  # the latest decision's
    Column("amount", money(), nullable=True),
    Column("applied_by", String(128), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("appeal_text", Text, nullable=True),
    Column("appealed_by", String(128), nullable=True),
    Column("appealed_at", DateTime(timezone=True), nullable=True),
    Index("ix_review_special_cases_period", "region", "period", "hospital_code"),
)
special_decisions = Table(
    "review_special_decisions", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("application_id", ROW_ID, nullable=False),
    Column("round", Integer, nullable=False),  # 1: the panel's, 2: the appeal's
    Column("outcome", String(16), nullable=False),
    Column("amount", money(), nullable=True),
    Column("reason", Text, nullable=False),
    Column("member", String(16), nullable=False),  # the deciding member's token id
    Column("decided_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("application_id", "round", name="uq_review_special_decisions_round"),
)
# a member is registered per quarter, with the hospitals they are tied to in it
panel_members = Table(
    "review_panel_quarters", metadata,
    Column("token_id", String(16), primary_key=True),
    Column("period", String(6), primary_key=True),  # the quarter "2024Q2"
    Column("hospitals", Text, nullable=False),  # JSON: the hospitals the member is tied to
    Column("active", Boolean, nullable=False),
    Column("registered_by", String(128), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Index("ix_review_panel_quarters_period", "period"),
)
# Append-only: rows are inserted, never updated or deleted.
audit = Table(
    "review_audit", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),  # token:<id> or cli:<user>
    Column("role", String(32), nullable=True),
    Column("action", String(40), nullable=False),
    Column("subject", String(128), nullable=True),
    Column("before", Text, nullable=True),  # JSON
    Column("after", Text, nullable=True),  # JSON
    Column("reason", Text, nullable=True),
    Index("ix_review_audit_at", "at"),
)


def _upsert(conn: AsyncConnection, table: Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


# what `figures` holds of a case's `CaseData` (special_cases.figures_of): the rest is in the stay's
# columns (case id, hospital, region treated, discharge date, method, DRG, case type, withdrawn;
# LOS from its dates) and its facts (total cost, fees, procedures, ICU and ventilation hours)
KEPT_FIGURES = ("status", "group_mean_cost", "high_threshold", "payment")
_FIGURE_COLUMNS = (stays.c.case_id, stays.c.hospital_code, stays.c.region, stays.c.admission_date,
                   stays.c.discharge_date, stays.c.method, stays.c.drg, stays.c.case_type, stays.c.withdrawn,
                   stays.c.facts, stays.c.figures)


def case_figures(r: Any) -> dict[str, Any]:
    """A stay's whole special-case figures (`sc.to_json` of its `CaseData`, field by field) from a
    row of `_FIGURE_COLUMNS`: the kept figures with its columns and facts."""
    kept = orjson.loads(r.figures)
    if "fees" in kept:  # written whole (before the figures were kept apart from the facts)
        return kept
    f = orjson.loads(r.facts)
    start, end = r.admission_date, r.discharge_date
    return {"case_id": r.case_id, "hospital_code": r.hospital_code, "region": r.region,
            "discharge_date": None if end is None else end.isoformat(), "method": r.method,
            "status": kept["status"], "drg": r.drg, "case_type": r.case_type,
            "los": (end - start).days if end and start else None, "total_cost": f.get("total_cost"),
            "group_mean_cost": kept["group_mean_cost"], "high_threshold": kept["high_threshold"],
            "payment": kept["payment"], "fees": f.get("fees") or {}, "procedures": f.get("procedures") or [],
            "icu_hours": f.get("icu_hours", 0), "ventilation_hours": f.get("ventilation_hours", 0),
            "withdrawn": bool(r.withdrawn)}


async def case_figures_of(conn: AsyncConnection, case_id: str) -> dict[str, Any] | None:
    """The case's latest priced figures as the special-case review keeps them (None: none kept)."""
    c = stays.c
    r = (await conn.execute(select(c.complex, *_FIGURE_COLUMNS)
                            .where(c.case_id == case_id, c.figures.is_not(None)))).first()
    if r is None:
        return None
    return {"case_id": r.case_id, "hospital_code": r.hospital_code, "region": r.region,
            "period": None if r.discharge_date is None else Period.month_of(r.discharge_date).quarter().label,
            "method": r.method, "complex": r.complex, "withdrawn": r.withdrawn, "figures": case_figures(r)}


async def all_case_figures(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Every case's kept figures (the special-case review's), by case id."""
    return {r.case_id: case_figures(r)
            for r in await conn.execute(select(*_FIGURE_COLUMNS).where(stays.c.figures.is_not(None)))}


async def lock_quota(conn: AsyncConnection, region: str, period: str) -> int:
    """Lock the region-quarter's counter row for the rest of the transaction (made first when
    missing): applications of the same region and quarter wait for each other here, so the cap
    is counted by one at a time. PostgreSQL: SELECT … FOR UPDATE; SQLite: the transaction holds
    the write lock from BEGIN IMMEDIATE already."""
    await conn.execute(_upsert(conn, special_quota).on_conflict_do_nothing(),
                       [dict(region=region, period=period, applications=0)])
    q = special_quota.c
    return int(await conn.scalar(select(q.applications).where(q.region == region, q.period == period)
                                 .with_for_update()) or 0)


async def count_applied(conn: AsyncConnection, region: str, period: str) -> None:
    q = special_quota.c
    await conn.execute(update(special_quota).where(q.region == region, q.period == period)
                       .values(applications=q.applications + 1))


async def region_period(conn: AsyncConnection, region: str, period: str) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """(DRG discharges, DIP discharges, complex cases per hospital, applications per hospital)
    of a region's quarter (withdrawn lists left out)."""
    f, quarter = stays.c, Period.parse(period)
    where = (f.region == region, f.discharge_date >= quarter.start, f.discharge_date < quarter.end,
             f.figures.is_not(None), f.withdrawn.is_(False))
    by_method = {r.method: r.n for r in (await conn.execute(
        select(f.method, func.count().label("n")).where(*where).group_by(f.method))).all()}
    loads = {r.hospital_code: r.n for r in (await conn.execute(
        select(f.hospital_code, func.count().label("n")).where(*where, f.complex.is_(True))
        .group_by(f.hospital_code))).all()}
    s = special_cases.c
    used = {r.hospital_code: r.n for r in (await conn.execute(
        select(s.hospital_code, func.count().label("n")).where(s.region == region, s.period == period)
        .group_by(s.hospital_code))).all()}
    drg = sum(n for m, n in by_method.items() if m != "dip")
    return drg, by_method.get("dip", 0), loads, used


async def application_of_case(conn: AsyncConnection, case_id: str) -> int | None:
    return await conn.scalar(select(special_cases.c.id).where(special_cases.c.case_id == case_id))


async def insert_application(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(special_cases).values(**values).returning(special_cases.c.id))
    return int(result.scalar_one())


def _application(r: Any, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    d = r._asdict()
    return {**d, "evidence": orjson.loads(d["evidence"]), "figures": orjson.loads(d["figures"]),
            "amount": None if d["amount"] is None else str(d["amount"]),
            "applied_at": _iso(d["applied_at"]), "appealed_at": _iso(d["appealed_at"]),
            "decisions": decisions}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


async def _decisions(conn: AsyncConnection, ids: Collection[int]) -> dict[int, list[dict[str, Any]]]:
    d = special_decisions.c
    out: dict[int, list[dict[str, Any]]] = {}
    for r in (await conn.execute(select(special_decisions).where(d.application_id.in_(list(ids)))
                                 .order_by(d.application_id, d.round))).all():
        out.setdefault(r.application_id, []).append({
            "round": r.round, "outcome": r.outcome, "amount": None if r.amount is None else str(r.amount),
            "reason": r.reason, "member": r.member, "decided_at": _iso(r.decided_at)})
    return out


async def application(conn: AsyncConnection, application_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    """An application with its decisions (`lock`: its row locked for a decision or an appeal)."""
    q = select(special_cases).where(special_cases.c.id == application_id)
    r = (await conn.execute(q.with_for_update() if lock else q)).first()
    if r is None:
        return None
    return _application(r, (await _decisions(conn, [r.id])).get(r.id, []))


async def applications(conn: AsyncConnection, *, period: str | None = None, periods: Collection[str] = (),
                       hospital: str | None = None, status: str | None = None,
                       tied: Mapping[str, Collection[str]] | None = None,
                       limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Applications, oldest first, filtered by quarter(s), hospital and status; `tied`: the
    hospitals left out per quarter (a panel member's ties)."""
    s = special_cases.c
    q = select(special_cases)
    for quarter, hospitals in (tied or {}).items():
        if hospitals:
            q = q.where(~and_(s.period == quarter, s.hospital_code.in_(list(hospitals))))
    if period:
        q = q.where(s.period == period)
    if periods:
        q = q.where(s.period.in_(list(periods)))
    if hospital:
        q = q.where(s.hospital_code == hospital)
    if status:
        q = q.where(s.status == status)
    q = q.order_by(s.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    rows = (await conn.execute(q)).all()
    decisions = await _decisions(conn, [r.id for r in rows])
    return [_application(r, decisions.get(r.id, [])) for r in rows]


async def insert_decision(conn: AsyncConnection, application_id: int, round_: int, outcome: str,
                          amount: Decimal | None, reason: str, member: str) -> None:
    await conn.execute(insert(special_decisions).values(
        application_id=application_id, round=round_, outcome=outcome, amount=amount, reason=reason,
        member=member, decided_at=datetime.now(UTC)))


async def update_application(conn: AsyncConnection, application_id: int, **values: Any) -> None:
    await conn.execute(update(special_cases).where(special_cases.c.id == application_id).values(**values))


def _member(r: Any) -> dict[str, Any]:
    return {**r._asdict(), "hospitals": orjson.loads(r.hospitals), "registered_at": _iso(r.registered_at)}


async def panel_member(conn: AsyncConnection, token_id: str, period: str) -> dict[str, Any] | None:
    """A member's registration for a quarter."""
    m = panel_members.c
    r = (await conn.execute(select(panel_members).where(m.token_id == token_id, m.period == period))).first()
    return None if r is None else _member(r)


async def save_panel_member(conn: AsyncConnection, token_id: str, period: str, hospitals: Sequence[str],
                            active: bool, who: str, exists: bool) -> None:
    m = panel_members.c
    values = dict(hospitals=orjson.dumps(sorted(set(hospitals))).decode(), active=active, registered_by=who,
                  registered_at=datetime.now(UTC))
    if exists:
        await conn.execute(update(panel_members).where(m.token_id == token_id, m.period == period).values(**values))
    else:
        await conn.execute(insert(panel_members).values(token_id=token_id, period=period, **values))


async def list_panel(conn: AsyncConnection, period: str | None = None) -> list[dict[str, Any]]:
    """The panel's registrations (of a quarter), by quarter and member."""
    m = panel_members.c
    q = select(panel_members)
    if period is not None:
        q = q.where(m.period == period)
    return [_member(r) for r in (await conn.execute(q.order_by(m.period, m.token_id))).all()]


async def ties_of(conn: AsyncConnection, token_id: str) -> dict[str, list[str]]:
    """The hospitals a member is tied to, per quarter of their active registrations."""
    m = panel_members.c
    rows = (await conn.execute(select(m.period, m.hospitals).where(m.token_id == token_id,
                                                                   m.active.is_(True)))).all()
    return {r.period: orjson.loads(r.hospitals) for r in rows}


async def record(conn: AsyncConnection, action: str, *, actor: str, role: str | None, subject: str | None,
                 before: Any = None, after: Any = None, reason: str | None = None) -> None:
    """Append one audit row (never updated or deleted); `before`/`after` as JSON."""
    def text(value: Any) -> str | None:
        return None if value is None else orjson.dumps(value, default=str).decode()

    await conn.execute(insert(audit).values(
        at=datetime.now(UTC), actor=actor[:128], role=role, action=action,
        subject=subject[:128] if subject else subject, before=text(before), after=text(after), reason=reason))


async def audit_rows(conn: AsyncConnection, *, action: str | None = None, actor: str | None = None,
                     subject: str | None = None, since: datetime | None = None, until: datetime | None = None,
                     limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Audit rows, oldest first, filtered (`since` inclusive, `until` exclusive)."""
    a = audit.c
    q = select(audit)
    for column, value in ((a.action, action), (a.actor, actor), (a.subject, subject)):
        if value:
            q = q.where(column == value)
    if since:
        q = q.where(a.at >= since)
    if until:
        q = q.where(a.at < until)
    q = q.order_by(a.at, a.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [{**r._asdict(), "at": _iso(r.at)} for r in (await conn.execute(q)).all()]


# === the feedback channel (意见收集, docs/domain.md §14) =========================================
# Opinions of hospitals and their doctors, with the bureau's triage, answer and closing; every
# step is appended to `review_audit` (subject "feedback:<id>") in the same transaction.

feedback = Table(
    "review_feedback", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("hospital_code", String(32), nullable=False),
    Column("category", String(24), nullable=False),
    Column("text", Text, nullable=False),
    Column("author", String(100), nullable=True),  # a doctor or a department, as the hospital names it
    Column("case_ids", Text, nullable=False),  # JSON [case id]
    Column("status", String(12), nullable=False),  # new | triaged | answered | closed
    Column("sent_by", String(128), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("triaged_by", String(128), nullable=True),
    Column("triaged_at", DateTime(timezone=True), nullable=True),
    Column("triage_note", Text, nullable=True),
    Column("answer", Text, nullable=True),
    Column("answered_by", String(128), nullable=True),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Index("ix_review_feedback_hospital", "hospital_code", "status"),
    Index("ix_review_feedback_sent", "sent_at"),
)


async def case_owners(conn: AsyncConnection, case_ids: Collection[str]) -> dict[str, str]:
    """The hospital of each of these cases review has priced figures of."""
    c = stays.c
    rows = (await conn.execute(select(c.case_id, c.hospital_code).where(c.case_id.in_(list(case_ids)),
                                                                        c.figures.is_not(None)))).all()
    return {r.case_id: r.hospital_code for r in rows}


def _feedback_dict(r: Any) -> dict[str, Any]:
    return {**{k: _iso(v) if isinstance(v, datetime) else v for k, v in r._asdict().items()},
            "case_ids": orjson.loads(r.case_ids)}


async def insert_feedback(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    return int((await conn.execute(insert(feedback).values(**values).returning(feedback.c.id))).scalar_one())


async def feedback_of(conn: AsyncConnection, feedback_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    q = select(feedback).where(feedback.c.id == feedback_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    return None if r is None else _feedback_dict(r)


async def list_feedback(conn: AsyncConnection, *, hospital: str | None, status: str | None, category: str | None,
                        limit: int, offset: int) -> list[dict[str, Any]]:
    f = feedback.c
    q = select(feedback)
    for column, value in ((f.hospital_code, hospital), (f.status, status), (f.category, category)):
        if value:
            q = q.where(column == value)
    rows = (await conn.execute(q.order_by(f.id.desc()).limit(limit).offset(offset))).all()
    return [_feedback_dict(r) for r in rows]


async def update_feedback(conn: AsyncConnection, feedback_id: int, **values: Any) -> None:
    await conn.execute(update(feedback).where(feedback.c.id == feedback_id).values(**values))


async def feedback_times(conn: AsyncConnection, since: datetime | None, until: datetime | None) -> list[Any]:
    """(status, category, sent_at, answered_at) of the opinions sent in [since, until)."""
    f = feedback.c
    q = select(f.status, f.category, f.sent_at, f.answered_at)
    if since:
        q = q.where(f.sent_at >= since)
    if until:
        q = q.where(f.sent_at < until)
    return [r._asdict() for r in (await conn.execute(q)).all()]
