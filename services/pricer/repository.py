"""The pricer's tables and every query on them. Takes the caller's connection; never commits.

Every stored figure names the policy id, policy version and weights version that produced it,
and a recomputation is a new row, never an update (docs/domain.md §13): a case re-grouped or
re-priced under a new policy version gets a new `pricer_results` row, a settlement re-run gets
new statement versions. Amounts are stored exactly (`shared.db.money`, `ExactDecimal`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
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
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.pricer.domain.calibration import HistoricalCase
from services.pricer.domain.dip_policy import read_dip_policy
from services.pricer.domain.dip_pricing import DipPolicy
from services.pricer.domain.grouped import (
    WITHDRAWN,
    PricingResult,
    SpecialDecision,
    case_to_price,
)
from services.pricer.domain.policy import Policy, parse_policy
from services.pricer.domain.pricing import CaseToPrice
from services.pricer.domain.settlement import Statement
from services.pricer.domain.timeliness import CalendarDay
from shared.db import ROW_ID, ExactDecimal, Versions, insert_many, latest_per_case, money
from shared.dip import Catalogue
from shared.events import CaseGrouped
from shared.money import ZERO
from shared.periods import InForce

NAME = "pricer"
metadata = MetaData()
policy_versions = Table(
    "pricer_policy_versions", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
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
    UniqueConstraint("policy_id", "version", name="uq_pricer_policy_versions"),
    Index("ix_pricer_policy_versions_region", "region", "valid_from"),
)
policy_audit = Table(
    "pricer_policy_audit", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("policy_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("who", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("what", Text, nullable=False),  # JSON: what the version is and changes
)
results = Table(
    "pricer_results", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("grouping_version", Integer, nullable=False),
    Column("drg", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("policy_id", String(64), nullable=True),
    Column("weight", ExactDecimal(10, 4), nullable=True),
    Column("base_rate", money(), nullable=True),
    Column("coefficient", ExactDecimal(8, 4), nullable=True),
    Column("payment_standard", money(), nullable=True),
    Column("priced_at", DateTime(timezone=True), nullable=False),
    Column("policy_version", Integer, nullable=True),
    Column("weights_version", String(64), nullable=True),
    Column("case_type", String(16), nullable=True),
    Column("hospital_code", String(32), nullable=True),
    Column("treatment_region", String(32), nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("total_cost", money(), nullable=True),
    Column("payment", money(), nullable=True),
    Column("fund_payment", money(), nullable=True),
    Column("breakdown", Text, nullable=True),  # Price.to_dict(): every figure used
    Column("region", String(32), nullable=True),
    Column("los", Integer, nullable=True),
    # the CaseToPrice of a row priced before `grouped` was kept (NULL since: simulations make it
    # from `grouped` with `case_to_price`, as the pricing did)
    Column("case_input", Text, nullable=True),
    Column("method", String(8), nullable=True),  # drg | dip: how the case was paid
    Column("dip_group", Text, nullable=True),
    Column("grouped", Text, nullable=True),  # the `case-grouped` payload priced: for re-pricing
    # the special-case decision it was priced with (§10; 0: none): a decision re-prices the case
    # under the same list, grouping and policy versions as a new row
    Column("special_case", Integer, nullable=False, server_default="0"),
    UniqueConstraint("case_id", "list_version", "grouping_version", "policy_id", "policy_version",
                     "special_case", name="uq_pricer_results_version"),
    # narrower than the version key: the scans for each case's latest price read it (30% faster)
    Index("ix_pricer_results_case", "case_id"),
    Index("ix_pricer_results_settlement", "policy_id", "discharge_date"),
    Index("ix_pricer_results_history", "region", "discharge_date"),
    # a priced row (about 2 kB with its breakdown and grouped payload) stays whole in its page:
    # no pglz compression or TOAST rows for each case (migration pricer_0013)
    postgresql_with={"toast_tuple_target": 8160},
)
dip_policies = Table(
    "pricer_dip_policies", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
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
    UniqueConstraint("policy_id", "version", name="uq_pricer_dip_policies_version"),
    Index("ix_pricer_dip_policies_region", "region", "valid_from"),
)
# review's special-case decisions (特例单议, §10): the latest per case prices it from then on
special_cases = Table(
    "pricer_special_cases", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("application_id", ROW_ID, nullable=False),
    Column("decision", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("amount", money(), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)
advances = Table(
    "pricer_advances", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("hospital_code", String(32), nullable=False),
    Column("year", String(4), nullable=False),
    Column("amount", money(), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("granted_by", String(100), nullable=False),
    Column("note", Text, nullable=True),
    Index("ix_pricer_advances_year", "year", "hospital_code"),
)
statements = Table(
    "pricer_statements", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # monthly | annual
    Column("hospital_code", String(32), nullable=False),
    Column("period", String(7), nullable=False),  # "2024-03" | "2024"
    Column("version", Integer, nullable=False),
    Column("policy_id", String(64), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("weights_version", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "hospital_code", "period", "policy_id", "version",
                     name="uq_pricer_statements_version"),
    Index("ix_pricer_statements_hospital", "hospital_code", "period"),
)

# Review deductions (`deduction-confirmed`): one per flag, applied by the first settlement run of
# its hospital after it arrived (`applied_to`: "<kind>|<policy>|<period>"; the new versions of
# that run apply it again, no other run does).
deductions = Table(
    "pricer_deductions", metadata,
    Column("flag_id", ROW_ID, primary_key=True, autoincrement=False),
    Column("hospital_code", String(32), nullable=False),
    Column("amount", money(), nullable=False),
    Column("rule", String(40), nullable=False),
    Column("case_id", String(100), nullable=True),
    Column("flag_period", String(7), nullable=True),
    Column("decided_by", String(128), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("applied_to", String(100), nullable=True),
    Index("ix_pricer_deductions_pending", "hospital_code", "applied_to"),
)

# The quality deposit's return shares (质量保证金): each adopted yearly performance evaluation
# (the gateway's, relayed) gives a hospital's share of its withheld deposit returned at the
# year's clearing; the latest adopted row of a (year, hospital) holds.
deposit_returns = Table(
    "pricer_deposit_returns", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("year", String(4), nullable=False),
    Column("hospital_code", String(32), nullable=False),
    Column("score", ExactDecimal(7, 2), nullable=False),
    Column("share", ExactDecimal(6, 4), nullable=False),
    Column("evaluation_id", String(64), nullable=False),
    Column("adopted_by", String(128), nullable=False),
    Column("adopted_at", DateTime(timezone=True), nullable=False),
    Index("ix_pricer_deposit_returns_year", "year", "hospital_code"),
)

# Negotiation rounds (协商谈判, §14): the drafts published to hospitals, each hospital's comments
# and objections per item with the bureau's answer, what the adopted version changed and why, and
# the round's own append-only history (who did what, when).
drafts = Table(
    "pricer_drafts", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("kind", String(24), nullable=False),  # policy | dip-policy | scheme-changeset
    Column("title", String(200), nullable=False),
    Column("region", String(32), nullable=True),
    Column("policy_id", String(64), nullable=True),
    Column("version", Integer, nullable=True),  # the version the draft proposes
    Column("document", Text, nullable=False),  # the draft as published (normalised JSON)
    Column("items", Text, nullable=False),  # JSON {item: value or null}
    Column("opens", Date, nullable=False),  # the comment window, CST, inclusive
    Column("closes", Date, nullable=False),
    Column("status", String(12), nullable=False),  # open | adopted
    Column("published_by", String(128), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("adopted_version", Integer, nullable=True),
    Column("adopted_from", Date, nullable=True),
    Column("adopted_by", String(128), nullable=True),
    Column("adopted_at", DateTime(timezone=True), nullable=True),
    Column("adoption_notes", Text, nullable=True),
)
draft_comments = Table(
    "pricer_draft_comments", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("draft_id", ROW_ID, nullable=False),
    Column("item", String(120), nullable=False),
    Column("kind", String(12), nullable=False),  # comment | objection
    Column("hospital_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("counter_proposal", String(200), nullable=True),
    Column("commented_by", String(128), nullable=False),
    Column("commented_at", DateTime(timezone=True), nullable=False),
    Column("answer", String(12), nullable=True),  # accepted | partly | rejected
    Column("answer_reason", Text, nullable=True),
    Column("answered_by", String(128), nullable=True),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Index("ix_pricer_draft_comments_draft", "draft_id", "hospital_code"),
)
draft_changes = Table(
    "pricer_draft_changes", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("draft_id", ROW_ID, nullable=False),
    Column("item", String(120), nullable=False),
    Column("draft_value", String(200), nullable=True),
    Column("adopted_value", String(200), nullable=True),
    Column("reason", Text, nullable=False),
    Column("comment_ids", Text, nullable=False),  # JSON [id]
    Index("ix_pricer_draft_changes_draft", "draft_id"),
)
draft_history = Table(
    "pricer_draft_history", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("draft_id", ROW_ID, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(24), nullable=False),  # published | commented | answered | adopted
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=True),
    Column("subject", String(128), nullable=True),
    Column("detail", Text, nullable=True),  # JSON
    Index("ix_pricer_draft_history_draft", "draft_id"),
)
# Hospitals' monthly declarations (申报, §8): one per hospital and month; the timeliness of the
# month's pre-settlement is counted from it.
declarations = Table(
    "pricer_declarations", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("hospital_code", String(32), nullable=False),
    Column("period", String(7), nullable=False),  # "2024-03"
    Column("declared_at", DateTime(timezone=True), nullable=False),
    Column("declared_by", String(128), nullable=False),
    UniqueConstraint("hospital_code", "period", name="uq_pricer_declarations"),
)
# The working-day calendar the bureau imports (domain/timeliness.py): per year its public
# holidays and make-up working days; an import replaces the year's days.
calendar_days = Table(
    "pricer_calendar_days", metadata,
    Column("day", Date, primary_key=True),
    Column("year", Integer, nullable=False),
    Column("kind", String(8), nullable=False),  # holiday | workday
    Column("name", String(64), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(128), nullable=False),
    Index("ix_pricer_calendar_days_year", "year"),
)
# The year's budget per region (§12 budget execution): a new value is a new version.
budgets = Table(
    "pricer_budgets", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("year", String(4), nullable=False),
    Column("version", Integer, nullable=False),
    Column("amount", money(), nullable=False),
    Column("point_value", ExactDecimal(18, 6), nullable=True),  # the budget point value (预算点值)
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("set_by", String(128), nullable=False),
    UniqueConstraint("region", "year", "version", name="uq_pricer_budgets_version"),
)

# --- policies -----------------------------------------------------------------------------------

def policy_book() -> Versions[Policy]:
    """Stored DRG policy versions, each parsed once."""
    return Versions(policy_versions, "policy_id", lambda row: parse_policy(row.document))


def dip_book() -> Versions[tuple[DipPolicy, Catalogue]]:
    """Stored DIP policy versions with the catalogue each prices with, each parsed once."""
    return Versions(dip_policies, "policy_id",
                    lambda row: read_dip_policy(row.document.encode(), row.catalogue.encode()))


class Policies:
    """The pricer's stage object: its stored DRG and DIP policy versions, each parsed once for
    the life of the process (a stored version never changes)."""

    def __init__(self) -> None:
        self.drg = policy_book()
        self.dip = dip_book()

    async def in_force(self, conn: AsyncConnection) -> tuple[InForce[Policy], InForce[tuple[DipPolicy, Catalogue]]]:
        return await self.drg.in_force(conn), await self.dip.in_force(conn)


async def stored_versions(conn: AsyncConnection, table: Table, policy_id: str) -> list[int]:
    """The versions of a policy stored in `table` (`policy_versions` or `dip_policies`), latest first."""
    return list((await conn.execute(select(table.c.version).where(table.c.policy_id == policy_id)
                                    .order_by(table.c.version.desc()))).scalars())


async def stored_periods(conn: AsyncConnection, table: Table, region: str) -> list[tuple[str, int, str, date, date | None]]:
    """(policy_id, version, region, valid_from, valid_to) of every version stored in `table` for
    the region."""
    c = table.c
    rows = (await conn.execute(select(c.policy_id, c.version, c.region, c.valid_from, c.valid_to)
                               .where(c.region == region).order_by(c.valid_from, c.policy_id))).all()
    return [(r.policy_id, r.version, r.region, r.valid_from, r.valid_to) for r in rows]


def _what(policy: Policy, document: bytes) -> str:
    return orjson.dumps({
        "region": policy.region, "valid_from": policy.valid_from.isoformat(),
        "valid_to": policy.valid_to.isoformat() if policy.valid_to else None,
        "method": policy.method, "scheme_id": policy.scheme_id,
        "weights_version": policy.weights.version, "weights": len(policy.weights.table),
        "notes": policy.notes, "sha256": hashlib.sha256(document).hexdigest(),
    }).decode()


async def insert_policy(conn: AsyncConnection, policy: Policy, document: bytes, who: str) -> None:
    """Store a DRG policy version (verbatim) with its audit row."""
    now = datetime.now(UTC)
    await conn.execute(insert(policy_versions).values(
        policy_id=policy.policy_id, version=policy.version, region=policy.region,
        valid_from=policy.valid_from, valid_to=policy.valid_to, method=policy.method,
        scheme_id=policy.scheme_id, weights_version=policy.weights.version,
        document=document.decode(), imported_at=now, imported_by=who))
    await conn.execute(insert(policy_audit).values(
        policy_id=policy.policy_id, version=policy.version, action="import", who=who, at=now,
        what=_what(policy, document)))


async def insert_dip_policy(conn: AsyncConnection, policy: DipPolicy, catalogue: Catalogue,
                            policy_bytes: bytes, catalogue_bytes: bytes, who: str) -> None:
    """Store a DIP policy version with the catalogue it prices with, and its audit row."""
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


async def list_policies(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every stored DRG policy version (without its document), by id and version."""
    v = policy_versions.c
    rows = (await conn.execute(select(
        v.policy_id, v.version, v.region, v.valid_from, v.valid_to, v.method,
        v.weights_version, v.imported_at, v.imported_by).order_by(v.policy_id, v.version))).all()
    return [{**r._asdict(), "valid_from": r.valid_from.isoformat(),
             "valid_to": r.valid_to.isoformat() if r.valid_to else None,
             "imported_at": r.imported_at.isoformat()} for r in rows]


async def latest_policy(conn: AsyncConnection, policy_id: str) -> Policy | tuple[DipPolicy, Catalogue] | None:
    """The latest stored version of a DRG policy, else of a DIP policy (with its catalogue)."""
    policy = await policy_book().latest(conn, policy_id)
    return policy if policy is not None else await dip_book().latest(conn, policy_id)


# --- priced cases -------------------------------------------------------------------------------

_EMPTY_ROW = dict.fromkeys(c.name for c in results.columns if c.name != "id")


def result_row(case_id: str, g: CaseGrouped, r: PricingResult, priced_at: datetime,
               grouped: Mapping[str, Any] | str | None = None, decision: int = 0) -> dict[str, Any]:
    """The `pricer_results` row of a priced case; `grouped` is the `case-grouped` payload as
    received (JSON-ready, or its JSON text as stored), kept so that the case can be re-priced
    (and its pricing input made again: `case_input` is not stored, `_cases_to_price`);
    `decision`: the special-case decision it was priced with (0: none)."""
    f, case, p = g.facts, r.case, r.price
    row = _EMPTY_ROW.copy()  # every column, in the table's order: the rows of a batch bind alike
    row.update(
        case_id=case_id, list_version=f.list_version, grouping_version=g.grouping_version,
        drg=g.drg, status=r.status, priced_at=priced_at,
        policy_version=p.policy_version if p else None, weights_version=p.weights_version if p else None,
        hospital_code=f.hospital_code, treatment_region=case.where_treated,
        discharge_date=f.discharge_date, total_cost=case.total_cost, region=f.region, los=case.los,
        breakdown=orjson.dumps(r.breakdown).decode() if p is not None else None,
        method=r.method, dip_group=r.dip_group,
        grouped=grouped if isinstance(grouped, str) else orjson.dumps(
            grouped if grouped is not None else g.model_dump(mode="json")).decode(),
        special_case=decision,
    )
    row.update(r.figures)
    return row


async def save_results(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Store priced cases (new rows: a re-pricing never updates one)."""
    await insert_many(conn, results, rows)


def _latest_results(*columns: Any) -> Any:
    # each case's current row is its latest (latest list, grouping or policy version)
    return latest_per_case(results, "id").with_only_columns(*columns)


async def latest_grouped(conn: AsyncConnection, region: str, first: date | None,
                         last: date | None) -> list[tuple[str, date | None, str | None]]:
    """(case id, discharge date, the `case-grouped` payload it was last priced from) of every
    case treated in `region` and discharged in [first, last]; the payload is None for rows
    priced before it was kept (migration pricer_0007)."""
    r = results.c
    q = _latest_results(r.case_id, r.discharge_date, r.grouped).where(r.treatment_region == region)
    if first is not None:
        q = q.where(r.discharge_date >= first)
    if last is not None:
        q = q.where(r.discharge_date <= last)
    return [(x.case_id, x.discharge_date, x.grouped) for x in (await conn.execute(q.order_by(r.case_id))).all()]


async def priced_keys(conn: AsyncConnection, case_ids: Sequence[str]) -> set[tuple[Any, ...]]:
    """(case id, list version, grouping version, policy id, policy version) of every stored
    price of the cases: a price already stored is not stored again."""
    r = results.c
    rows = (await conn.execute(select(r.case_id, r.list_version, r.grouping_version, r.policy_id,
                                      r.policy_version, r.special_case)
                               .where(r.case_id.in_(list(case_ids))))).all()
    return {tuple(x) for x in rows}


async def latest_grouped_of(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, str | None]:
    """The `case-grouped` payload each case was last priced from (None: priced before it was kept)."""
    r = results.c
    q = _latest_results(r.case_id, r.grouped).where(r.case_id.in_(list(case_ids)))
    return {x.case_id: x.grouped for x in (await conn.execute(q)).all()}


async def decisions_of(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, SpecialDecision]:
    """The latest special-case decision of each of these cases that has one."""
    d = special_cases.c
    rows = (await conn.execute(select(special_cases).where(d.case_id.in_(list(case_ids))))).all()
    return {x.case_id: SpecialDecision(x.decision, x.outcome, x.amount, x.application_id) for x in rows}


async def save_decisions(conn: AsyncConnection, decisions: Mapping[str, SpecialDecision]) -> None:
    """Store each case's latest decision (replacing an earlier one)."""
    now = datetime.now(UTC)
    await conn.execute(delete(special_cases).where(special_cases.c.case_id.in_(list(decisions))))
    await insert_many(conn, special_cases, [dict(case_id=cid, application_id=d.application_id, decision=d.decision,
                                                 outcome=d.outcome, amount=d.amount, decided_at=now)
                                            for cid, d in decisions.items()])


async def load_history(conn: AsyncConnection, region: str, first_year: int, last_year: int) -> list[HistoricalCase]:
    """Each case's latest priced row discharged in the years, as calibration input (§6).

    A withdrawn list is kept and marked (calibration excludes it and says so); a case the
    grouper could not group is passed on with its status, also to be excluded and counted.
    """
    r = results.c
    rows = (await conn.execute(_latest_results(
        r.case_id, r.hospital_code, r.drg, r.status, r.total_cost, r.los, r.discharge_date
    ).where(r.region == region, r.total_cost.is_not(None),
            r.discharge_date >= date(first_year, 1, 1), r.discharge_date <= date(last_year, 12, 31)))).all()
    return [HistoricalCase(case_id=x.case_id, year=x.discharge_date.year, region=region,
                           hospital_code=x.hospital_code, drg=x.drg,
                           group_status="FAIL" if x.status == "NOT_GROUPED" else "SUCCESS",
                           cost=x.total_cost, los=x.los, withdrawn=x.status == WITHDRAWN)
            for x in rows]


async def priced_span(conn: AsyncConnection, region: str) -> tuple[int, int, int] | None:
    """(cases, first year, last year) of the region's priced rows with a discharge date, or None."""
    r = results.c
    row = (await conn.execute(select(func.count(func.distinct(r.case_id)), func.min(r.discharge_date),
                                     func.max(r.discharge_date))
                              .where(r.region == region, r.discharge_date.is_not(None)))).one()
    return None if not row[0] else (int(row[0]), row[1].year, row[2].year)


async def load_cases_to_price(conn: AsyncConnection, region: str, year: int) -> list[CaseToPrice]:
    """The pricing inputs of the region's cases discharged in the year (latest row per case,
    withdrawn lists left out), for simulations and what-if runs (§9)."""
    r = results.c
    return _cases_to_price((await conn.execute(_latest_results(r.case_id, r.case_input, r.grouped).where(
        r.region == region, or_(r.grouped.is_not(None), r.case_input.is_not(None)), r.status != WITHDRAWN,
        r.discharge_date >= date(year, 1, 1), r.discharge_date <= date(year, 12, 31)))).all())


def _cases_to_price(rows: Sequence[Any]) -> list[CaseToPrice]:
    """The pricing inputs of (case id, case input, grouped) rows: the `case-grouped` payload
    priced, made into its input as the pricing made it (`case_to_price`), else (a row priced
    before the payload was kept) the input stored."""
    return [case_to_price(x.case_id, CaseGrouped.model_validate_json(x.grouped)) if x.grouped is not None
            else CaseToPrice.model_validate_json(x.case_input) for x in rows]


# --- settlement ---------------------------------------------------------------------------------

async def period_breakdowns(conn: AsyncConnection, policy_id: str, start: date, end: date) -> list[str]:
    """The current price (`Price.to_dict()` as stored) of every case discharged in [start, end)
    under `policy_id`.

    A case's current price is its latest row (latest list, grouping or policy version); cases
    whose current price is under another policy belong to that policy's settlement.
    """
    r = results.c
    rows = (await conn.execute(_latest_results(r.breakdown).where(
        r.policy_id == policy_id, r.breakdown.is_not(None),
        r.discharge_date >= start, r.discharge_date < end))).scalars().all()
    return list(rows)


async def next_statement_version(conn: AsyncConnection, kind: str, period: str, policy_id: str) -> int:
    s = statements.c
    prev = await conn.scalar(select(func.max(s.version)).where(
        s.kind == kind, s.period == period, s.policy_id == policy_id))
    return (prev or 0) + 1


async def save_statements(conn: AsyncConnection, items: Sequence[Statement],
                          extra: dict[str, Any] | None = None) -> None:
    """Store statement versions (`extra`: the clearing's summary, kept in each document)."""
    now = datetime.now(UTC)
    await insert_many(conn, statements, [dict(
        kind=st.kind, hospital_code=st.hospital_code, period=st.period, version=st.version,
        policy_id=st.policy_id, policy_version=st.policy_version,
        weights_version=st.weights_version,
        document=orjson.dumps(st.to_dict() | ({"clearing": extra} if extra else {})).decode(),
        created_at=now) for st in items])


async def _latest_monthly(conn: AsyncConnection, policy_id: str, year: str) -> dict[tuple[str, str], Any]:
    """The latest monthly statement version per (hospital, month) of the year."""
    s = statements.c
    rows = (await conn.execute(select(s.hospital_code, s.period, s.version, s.document).where(
        s.kind == "monthly", s.policy_id == policy_id, s.period.like(f"{year}-%")))).all()
    latest: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row.hospital_code, row.period)
        if key not in latest or row.version > latest[key].version:
            latest[key] = row
    return latest


async def _sum_line(conn: AsyncConnection, policy_id: str, year: str, line: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for (hospital, _period), row in (await _latest_monthly(conn, policy_id, year)).items():
        amount = Decimal(orjson.loads(row.document)["lines"].get(line, "0"))
        out[hospital] = out.get(hospital, ZERO) + amount
    return out


async def presettled(conn: AsyncConnection, policy_id: str, year: str) -> dict[str, Decimal]:
    """Σ pre-settled per hospital over the year's months, from each month's latest version."""
    return await _sum_line(conn, policy_id, year, "presettled")


async def monthly_deductions(conn: AsyncConnection, policy_id: str, year: str) -> dict[str, Decimal]:
    """Σ review deductions per hospital the year's monthly statements (latest versions) applied."""
    return await _sum_line(conn, policy_id, year, "review_deductions")


async def deposit_withheld(conn: AsyncConnection, policy_id: str, year: str) -> dict[str, Decimal]:
    """Σ quality deposit per hospital the year's monthly statements (latest versions) withheld."""
    return await _sum_line(conn, policy_id, year, "quality_deposit")


async def add_deposit_returns(conn: AsyncConnection, year: str, evaluation_id: str, who: str,
                              shares: Mapping[str, tuple[Decimal, Decimal]]) -> None:
    """Keep an adopted evaluation's (score, share) per hospital for the year's clearing."""
    now = datetime.now(UTC)
    await insert_many(conn, deposit_returns, [dict(
        year=year, hospital_code=h, score=score, share=share, evaluation_id=evaluation_id, adopted_by=who,
        adopted_at=now) for h, (score, share) in sorted(shares.items())])


async def deposit_return_shares(conn: AsyncConnection, year: str) -> dict[str, Decimal]:
    """The latest adopted return share per hospital of a year."""
    d = deposit_returns.c
    rows = (await conn.execute(select(d.hospital_code, d.share).where(d.year == year).order_by(d.id))).all()
    return {h: Decimal(share) for h, share in rows}


async def carried_over(conn: AsyncConnection, policy_id: str, year: str,
                       before: str | None = None) -> dict[str, Decimal]:
    """What each hospital's last monthly statement of the year (latest version; of a month
    before `before`, "YYYY-MM", when given) carried over: review deductions its pre-settled
    amount could not net, for its next month or the annual clearing."""
    last: dict[str, tuple[str, Any]] = {}
    for (hospital, period), row in (await _latest_monthly(conn, policy_id, year)).items():
        if (before is None or period < before) and (hospital not in last or period > last[hospital][0]):
            last[hospital] = (period, row)
    out = {h: Decimal(orjson.loads(row.document)["lines"].get("carried_over", "0")) for h, (_p, row) in last.items()}
    return {h: amount for h, amount in out.items() if amount}


async def insert_advance(conn: AsyncConnection, hospital_code: str, year: str, amount: Decimal,
                         who: str, note: str | None) -> None:
    await conn.execute(insert(advances).values(
        hospital_code=hospital_code, year=year, amount=amount, granted_at=datetime.now(UTC),
        granted_by=who, note=note))


async def advances_of_year(conn: AsyncConnection, year: str) -> dict[str, Decimal]:
    """Σ prepayment advances granted per hospital for the year."""
    a = advances.c
    return {r.hospital_code: r.total for r in (await conn.execute(
        select(a.hospital_code, func.sum(a.amount).label("total"))
        .where(a.year == year).group_by(a.hospital_code))).all()}


async def list_statements(conn: AsyncConnection, hospital: str, period: str | None) -> list[dict[str, Any]]:
    """Every stored settlement statement version of a hospital (optionally one period)."""
    s = statements.c
    q = select(statements).where(s.hospital_code == hospital)
    if period:
        q = q.where(s.period == period)
    rows = (await conn.execute(q.order_by(s.period, s.kind, s.version))).all()
    return [{"kind": row.kind, "hospital_code": row.hospital_code, "period": row.period,
             "version": row.version, "policy_id": row.policy_id,
             "policy_version": row.policy_version, "weights_version": row.weights_version,
             "created_at": row.created_at.isoformat(), "document": orjson.loads(row.document)}
            for row in rows]


async def budget_execution(conn: AsyncConnection, region: str, year: str) -> dict[str, Any]:
    """A region's year as settled so far (the bureau's budget execution, §12): per month the
    latest statement version of each hospital summed (fund due, pre-settled, the provisional
    point value), the annual clearing's latest version (final point value, cleared, balance) and
    the prepayments (预付金) granted per hospital."""
    policy_ids = await region_policy_ids(conn, region)
    s = statements.c
    rows = (await conn.execute(select(statements).where(
        s.policy_id.in_(policy_ids), s.period.like(f"{year}%")).order_by(s.version))).all()
    latest = {(r.kind, r.hospital_code, r.period, r.policy_id): r for r in rows}  # the highest version wins
    months: dict[str, dict[str, Any]] = {}
    annual: dict[str, Any] = {"hospitals": 0, "cleared": Decimal(0), "balance": Decimal(0), "point_value": None}
    for (kind, _h, period, _p), r in sorted(latest.items()):
        lines = orjson.loads(r.document).get("lines") or {}
        if kind == "monthly":
            m = months.setdefault(period, {"period": period, "hospitals": 0, "cases": 0, "fund_due": Decimal(0),
                                           "presettled": Decimal(0), "provisional_point_value": None})
            m["hospitals"] += 1
            m["cases"] += int(Decimal(lines.get("cases") or 0))
            m["fund_due"] += Decimal(lines.get("fund_due") or 0)
            m["presettled"] += Decimal(lines.get("presettled") or 0)
            m["provisional_point_value"] = lines.get("provisional_point_value") or m["provisional_point_value"]
        else:
            annual["hospitals"] += 1
            annual["cleared"] += Decimal(lines.get("cleared") or 0)
            annual["balance"] += Decimal(lines.get("balance") or 0)
            annual["point_value"] = lines.get("final_point_value") or annual["point_value"]
    a = advances.c
    granted = (await conn.execute(select(a.hospital_code, a.amount, a.granted_at).where(a.year == year)
                                  .order_by(a.hospital_code, a.granted_at))).all()
    return {"region": region, "year": year, "months": [months[k] for k in sorted(months)], "annual": annual,
            "advances": [{"hospital_code": g.hospital_code, "amount": g.amount, "granted_at": g.granted_at}
                         for g in granted]}


async def region_policy_ids(conn: AsyncConnection, region: str) -> list[str]:
    """The ids of the region's DRG and DIP policies (its statements are under them)."""
    out: set[str] = set()
    for table in (policy_versions, dip_policies):
        out.update((await conn.execute(select(table.c.policy_id).where(table.c.region == region).distinct()))
                   .scalars())
    return sorted(out)


async def region_hospitals(conn: AsyncConnection, region: str) -> set[str]:
    """The hospitals with a case priced where it was treated in the region, or a statement
    under one of the region's policies."""
    r, s = results.c, statements.c
    found = set((await conn.execute(select(r.hospital_code).where(
        r.treatment_region == region, r.hospital_code.is_not(None)).distinct())).scalars())
    ids = await region_policy_ids(conn, region)
    if ids:
        found.update((await conn.execute(select(s.hospital_code).where(s.policy_id.in_(ids)).distinct())).scalars())
    return found


# --- declarations, the calendar, budgets (timeliness and budget execution, §8, §12) ----------------

def _insert_or_ignore(conn: AsyncConnection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert(table).on_conflict_do_nothing()


async def declare(conn: AsyncConnection, hospital_code: str, period: str, who: str) -> tuple[datetime, bool]:
    """Store a hospital's declaration of a month unless it has one; (declared at, newly stored).
    Two concurrent declarations store one (the unique constraint), both answer its time."""
    d = declarations.c
    now = datetime.now(UTC)
    result = await conn.execute(_insert_or_ignore(conn, declarations).values(
        hospital_code=hospital_code, period=period, declared_at=now, declared_by=who[:128]))
    at = (await conn.execute(select(d.declared_at).where(d.hospital_code == hospital_code,
                                                          d.period == period))).scalar_one()
    return _aware(at), bool(result.rowcount)  # type: ignore[attr-defined]


async def declarations_of(conn: AsyncConnection, period: str) -> dict[str, datetime]:
    """When each hospital declared the month."""
    d = declarations.c
    return {h: _aware(at) for h, at in (await conn.execute(
        select(d.hospital_code, d.declared_at).where(d.period == period))).all()}


async def first_presettled(conn: AsyncConnection, policy_ids: Sequence[str], period: str) -> dict[str, datetime]:
    """When each hospital's first monthly statement of the month was created (its pre-settlement)."""
    if not policy_ids:
        return {}
    s = statements.c
    return {h: _aware(at) for h, at in (await conn.execute(
        select(s.hospital_code, func.min(s.created_at)).where(
            s.kind == "monthly", s.period == period, s.policy_id.in_(list(policy_ids)))
        .group_by(s.hospital_code))).all()}


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def replace_calendar_year(conn: AsyncConnection, year: int, days: Sequence[CalendarDay], who: str) -> None:
    """The year's holidays and make-up working days, replacing those imported before."""
    now = datetime.now(UTC)
    await conn.execute(delete(calendar_days).where(calendar_days.c.year == year))
    await insert_many(conn, calendar_days, [dict(day=d.day, year=year, kind=d.kind, name=d.name,
                                                 imported_at=now, imported_by=who[:128]) for d in days])


async def load_calendar(conn: AsyncConnection) -> list[CalendarDay]:
    """Every imported calendar day (a few dozen a year)."""
    c = calendar_days.c
    return [CalendarDay(r.day, r.kind, r.name)
            for r in (await conn.execute(select(c.day, c.kind, c.name).order_by(c.day))).all()]


async def calendar_years(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Per imported year: its holidays, make-up working days and when it was imported."""
    c = calendar_days.c
    rows = (await conn.execute(select(c.year, c.kind, func.count(), func.max(c.imported_at), func.max(c.imported_by))
                               .group_by(c.year, c.kind).order_by(c.year))).all()
    out: dict[int, dict[str, Any]] = {}
    for year, kind, n, at, who in rows:
        y = out.setdefault(year, {"year": year, "holidays": 0, "workdays": 0, "imported_at": _aware(at),
                                  "imported_by": who})
        y["holidays" if kind == "holiday" else "workdays"] = n
    return list(out.values())


async def set_budget(conn: AsyncConnection, region: str, year: str, amount: Decimal,
                     point_value: Decimal | None, who: str) -> int:
    """Store the region's budget for the year as a new version; its number."""
    b = budgets.c
    prev = await conn.scalar(select(func.max(b.version)).where(b.region == region, b.year == year))
    version = (prev or 0) + 1
    await conn.execute(insert(budgets).values(region=region, year=year, version=version, amount=amount,
                                              point_value=point_value, set_at=datetime.now(UTC), set_by=who[:128]))
    return version


async def latest_budget(conn: AsyncConnection, region: str, year: str) -> dict[str, Any] | None:
    """The region's budget for the year (its latest version), or None."""
    b = budgets.c
    row = (await conn.execute(select(b.version, b.amount, b.point_value, b.set_at, b.set_by).where(
        b.region == region, b.year == year).order_by(b.version.desc()).limit(1))).first()
    return None if row is None else row._asdict() | {"set_at": _aware(row.set_at)}


async def netted_advances(conn: AsyncConnection, policy_ids: Sequence[str], year: str) -> dict[str, Decimal]:
    """The prepayments each hospital's annual clearing (its latest version) netted."""
    if not policy_ids:
        return {}
    s = statements.c
    rows = (await conn.execute(select(s.hospital_code, s.version, s.document).where(
        s.kind == "annual", s.period == year, s.policy_id.in_(list(policy_ids))).order_by(s.version))).all()
    latest = {r.hospital_code: r for r in rows}  # the highest version wins
    return {h: Decimal((orjson.loads(r.document).get("lines") or {}).get("advances") or 0)
            for h, r in latest.items()}


async def priced_versions(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    """Every stored price of a case, oldest first: its versions and the decision each used."""
    r = results.c
    rows = (await conn.execute(select(r.id, r.policy_id, r.policy_version, r.list_version, r.grouping_version,
                                      r.special_case, r.case_type, r.total_cost, r.payment)
                               .where(r.case_id == case_id).order_by(r.id))).all()
    return [x._asdict() for x in rows]


async def count_priced_cases(conn: AsyncConnection, policy_id: str) -> int:
    """Cases with at least one price under `policy_id` (any version)."""
    return int(await conn.scalar(select(func.count(func.distinct(results.c.case_id)))
                                 .where(results.c.policy_id == policy_id)) or 0)


# --- review deductions ----------------------------------------------------------------------------

async def add_deductions(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store confirmed deductions; one already stored (a redelivery) is left as it is."""
    if not rows:
        return
    stored = set((await conn.execute(select(deductions.c.flag_id).where(
        deductions.c.flag_id.in_([r["flag_id"] for r in rows])))).scalars())
    await insert_many(conn, deductions, [r for r in {r["flag_id"]: r for r in rows}.values()
                                         if r["flag_id"] not in stored])


async def claim_deductions(conn: AsyncConnection, run: str, hospitals: Sequence[str]) -> dict[str, Decimal]:
    """Σ deductions per hospital a settlement run applies: those it applied before (an earlier
    version of the same run) and those pending, which it claims. A concurrent run waits for the
    row locks and then finds them claimed."""
    if not hospitals:
        return {}
    d = deductions.c
    await conn.execute(update(deductions).where(d.hospital_code.in_(hospitals), d.applied_to.is_(None))
                       .values(applied_to=run))
    out: dict[str, Decimal] = {}
    for h, amount in (await conn.execute(select(d.hospital_code, d.amount).where(d.applied_to == run))).all():
        out[h] = out.get(h, ZERO) + amount
    return out


# --- negotiation rounds (§14) ---------------------------------------------------------------------

def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def _draft_dict(r: Any) -> dict[str, Any]:
    return {**{k: _iso(v) for k, v in r._asdict().items() if k not in ("document", "items")},
            "items": orjson.loads(r.items)}


async def insert_draft(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    return int((await conn.execute(insert(drafts).values(**values).returning(drafts.c.id))).scalar_one())


async def draft(conn: AsyncConnection, draft_id: int, *, with_document: bool = False,
                lock: bool = False) -> dict[str, Any] | None:
    """A draft (its items parsed; its document too when asked), or None."""
    q = select(drafts).where(drafts.c.id == draft_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    if r is None:
        return None
    out = _draft_dict(r)
    if with_document:
        out["document"] = orjson.loads(r.document)
    return out


async def list_drafts(conn: AsyncConnection, status: str | None) -> list[dict[str, Any]]:
    q = select(drafts).order_by(drafts.c.id.desc())
    if status:
        q = q.where(drafts.c.status == status)
    return [_draft_dict(r) | {"items": len(orjson.loads(r.items))} for r in (await conn.execute(q)).all()]


async def update_draft(conn: AsyncConnection, draft_id: int, **values: Any) -> None:
    await conn.execute(update(drafts).where(drafts.c.id == draft_id).values(**values))


async def insert_comment(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    return int((await conn.execute(insert(draft_comments).values(**values)
                                   .returning(draft_comments.c.id))).scalar_one())


async def comments(conn: AsyncConnection, draft_id: int, *, hospital: str | None = None,
                   comment_id: int | None = None) -> list[dict[str, Any]]:
    """A draft's comments, oldest first (one hospital's, or one comment, when asked)."""
    c = draft_comments.c
    q = select(draft_comments).where(c.draft_id == draft_id)
    if hospital is not None:
        q = q.where(c.hospital_code == hospital)
    if comment_id is not None:
        q = q.where(c.id == comment_id)
    return [{k: _iso(v) for k, v in r._asdict().items()} for r in (await conn.execute(q.order_by(c.id))).all()]


async def answer_comment(conn: AsyncConnection, comment_id: int, **values: Any) -> None:
    await conn.execute(update(draft_comments).where(draft_comments.c.id == comment_id).values(**values))


async def insert_changes(conn: AsyncConnection, draft_id: int, changes: Sequence[Mapping[str, Any]]) -> None:
    await insert_many(conn, draft_changes, [
        dict(draft_id=draft_id, item=ch["item"], draft_value=ch["draft_value"], adopted_value=ch["adopted_value"],
             reason=ch["reason"], comment_ids=orjson.dumps(ch["comment_ids"]).decode()) for ch in changes])


async def changes(conn: AsyncConnection, draft_id: int) -> list[dict[str, Any]]:
    c = draft_changes.c
    rows = (await conn.execute(select(draft_changes).where(c.draft_id == draft_id).order_by(c.id))).all()
    return [{"item": r.item, "draft_value": r.draft_value, "adopted_value": r.adopted_value, "reason": r.reason,
             "comment_ids": orjson.loads(r.comment_ids)} for r in rows]


async def record_draft(conn: AsyncConnection, draft_id: int, action: str, *, actor: str, role: str | None,
                       subject: str | None = None, detail: Any = None) -> None:
    """Append one row to a round's history (never updated or deleted)."""
    await conn.execute(insert(draft_history).values(
        draft_id=draft_id, at=datetime.now(UTC), action=action, actor=actor[:128], role=role,
        subject=subject, detail=None if detail is None else orjson.dumps(detail, default=str).decode()))


async def draft_history_of(conn: AsyncConnection, draft_id: int) -> list[dict[str, Any]]:
    h = draft_history.c
    rows = (await conn.execute(select(draft_history).where(h.draft_id == draft_id).order_by(h.at, h.id))).all()
    return [{**r._asdict(), "at": r.at.isoformat(),
             "detail": orjson.loads(r.detail) if r.detail else None} for r in rows]


async def record_policy_adoption(conn: AsyncConnection, policy_id: str, version: int, who: str,
                                 what: Mapping[str, Any]) -> None:
    """The policy's own history: the version was adopted from a negotiated draft."""
    await conn.execute(insert(policy_audit).values(
        policy_id=policy_id, version=version, action="adopt", who=who, at=datetime.now(UTC),
        what=orjson.dumps(what).decode()))


async def hospital_cases_to_price(conn: AsyncConnection, region: str, hospital: str,
                                  year: int | None) -> list[CaseToPrice]:
    """The pricing inputs of one hospital's stored cases treated in the region (latest row per
    case, withdrawn lists left out; one discharge year when given), for a draft's impact (§9)."""
    r = results.c
    q = _latest_results(r.case_id, r.case_input, r.grouped).where(
        r.treatment_region == region, r.hospital_code == hospital,
        or_(r.grouped.is_not(None), r.case_input.is_not(None)), r.status != WITHDRAWN)
    if year is not None:
        q = q.where(r.discharge_date >= date(year, 1, 1), r.discharge_date <= date(year, 12, 31))
    return _cases_to_price((await conn.execute(q)).all())
