"""The grouper's tables and every query on them. Takes the caller's connection; never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
    and_,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.grouper.domain import CatalogueRegistration, Grouping, ToGroup
from shared.db import ROW_ID, Versions, insert_many, latest_per_case
from shared.dip import Catalogue
from shared.events import CaseGrouped, CaseReceived

NAME = "grouper"
metadata = MetaData()
cases = Table(
    "grouper_cases", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("list_version", Integer, primary_key=True),
    Column("region", String(32), nullable=False),
    Column("discharge_date", Date, nullable=True),
    Column("correlation_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the `case-received` payload, as received
    Index("ix_grouper_cases_discharge", "discharge_date"),
)
results = Table(
    "grouper_results", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("grouping_version", Integer, nullable=False),
    Column("scheme_id", String(64), nullable=False),
    Column("code_mode", String(8), nullable=False),
    Column("mdc", String(8), nullable=False),
    Column("adrg", String(8), nullable=False),
    Column("drg", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trace", Text, nullable=True),
    Column("grouped_at", DateTime(timezone=True), nullable=False),
    Column("dip_group", Text, nullable=True),
    UniqueConstraint("case_id", "list_version", "grouping_version", name="uq_grouper_results_version"),
)
registrations = Table(
    "grouper_schemes", metadata,
    Column("scheme_id", String(64), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_to", Date, nullable=True),
    Column("path", Text, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)
dip_catalogues = Table(
    "grouper_dip_catalogues", metadata,
    Column("catalogue_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_to", Date, nullable=True),
    Column("document", Text, nullable=False),  # `Catalogue.to_document()`, as imported
    Column("imported_at", DateTime(timezone=True), nullable=False),
)


# --- received cases and their groupings ----------------------------------------------------------

async def insert_received(conn: AsyncConnection, items: Sequence[ToGroup]) -> None:
    """Store each received list version with its `case-received` payload (its text as received)."""
    await insert_many(conn, cases, [dict(
        case_id=i.case_id, list_version=i.payload.facts.list_version, region=i.payload.facts.region,
        discharge_date=i.payload.facts.discharge_date, correlation_id=i.correlation_id,
        payload=i.received) for i in items])


async def latest_grouping_versions(conn: AsyncConnection,
                                   case_ids: Collection[str]) -> dict[tuple[str, int], int]:
    """The highest stored grouping version of each (case, list version) of these cases."""
    r = results.c
    return {(row.case_id, row.list_version): row.v for row in (
        await conn.execute(select(r.case_id, r.list_version, func.max(r.grouping_version).label("v"))
                           .where(r.case_id.in_(case_ids))
                           .group_by(r.case_id, r.list_version))).all()}


async def insert_results(conn: AsyncConnection, groupings: Sequence[Grouping]) -> None:
    """Store each grouping as a new grouping version (with the stored part of its trace, see
    `Grouping`): one statement."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for g in groupings:
        e = g.event
        rows.append(dict(
            case_id=g.case_id, list_version=e.facts.list_version, grouping_version=e.grouping_version,
            scheme_id=e.scheme_id, code_mode=e.code_mode, mdc=e.mdc, adrg=e.adrg, drg=e.drg,
            status=e.status, trace=g.trace, grouped_at=now,
            dip_group=e.dip.group if e.dip is not None else None))
    await insert_many(conn, results, rows)


@dataclass(frozen=True)
class StoredGrouping:
    """A case's latest grouping with what recomputes its trace."""

    case_id: str
    list_version: int
    grouping_version: int
    scheme_id: str
    code_mode: str
    status: str
    drg: str
    trace: str | None  # the stored part (DIP)
    received: str  # the `case-received` payload it was grouped from


async def latest_grouping(conn: AsyncConnection, case_id: str) -> StoredGrouping | None:
    """The latest grouping of the case's latest list version, with its received payload."""
    r, c = results.c, cases.c
    row = (await conn.execute(
        select(r.case_id, r.list_version, r.grouping_version, r.scheme_id, r.code_mode, r.status, r.drg,
               r.trace, c.payload)
        .join(cases, and_(c.case_id == r.case_id, c.list_version == r.list_version))
        .where(r.case_id == case_id)
        .order_by(r.list_version.desc(), r.grouping_version.desc()).limit(1))).first()
    return None if row is None else StoredGrouping(
        row.case_id, row.list_version, row.grouping_version, row.scheme_id, row.code_mode, row.status,
        row.drg, row.trace, row.payload)


def _latest_lists(first: date | None, last: date | None):  # type: ignore[no-untyped-def]
    """The latest list version of each case, kept when discharged in [first, last] (the period
    filters the latest version, so a case whose latest version left it is not taken)."""
    q = latest_per_case(cases, "list_version")
    if first is not None:
        q = q.where(cases.c.discharge_date >= first)
    if last is not None:
        q = q.where(cases.c.discharge_date <= last)
    return q.order_by(cases.c.case_id)


@dataclass(frozen=True)
class StoredList:
    """A stored list version as received (its payload parsed only when it is grouped)."""

    case_id: str
    correlation_id: str
    payload: str

    def to_group(self) -> ToGroup:
        return ToGroup.from_json(self.case_id, self.correlation_id, self.payload)


async def latest_lists(conn: AsyncConnection, first: date | None = None,
                       last: date | None = None) -> list[StoredList]:
    """The latest list version of each case discharged in [first, last], by case id."""
    return [StoredList(r.case_id, r.correlation_id, r.payload)
            for r in (await conn.execute(_latest_lists(first, last))).all()]


async def latest_received(conn: AsyncConnection, first: date, last: date) -> list[tuple[str, CaseReceived]]:
    """Public, for offline commands of other parts: the latest list version of each case
    discharged in [first, last], ordered by case id, with its stored `case-received` payload."""
    return [(r.case_id, CaseReceived.model_validate_json(r.payload))
            for r in (await conn.execute(_latest_lists(first, last))).all()]


async def hospital_lists(conn: AsyncConnection, hospital: str) -> list[CaseReceived]:
    """The latest list version of each of one hospital's cases (withdrawn lists left out), by
    case id. Case ids are `<hospital>-<setl_id>` (ingest): the prefix narrows the read, the
    stored facts decide."""
    q = latest_per_case(cases, "list_version", where=cases.c.case_id.startswith(f"{hospital}-", autoescape=True))
    q = q.order_by(cases.c.case_id)
    out = []
    for row in (await conn.execute(q)).all():
        received = CaseReceived.model_validate_json(row.payload)
        if received.facts.hospital_code == hospital and not received.facts.withdrawn:
            out.append(received)
    return out


async def latest_drgs(conn: AsyncConnection, case_ids: Collection[str]) -> dict[tuple[str, int], str]:
    """The DRG of the latest grouping of each (case, list version) of these cases."""
    r = results.c
    drgs: dict[tuple[str, int], str] = {}
    for row in (await conn.execute(select(r.case_id, r.list_version, r.drg)
                                   .where(r.case_id.in_(case_ids)).order_by(r.grouping_version))).all():
        drgs[(row.case_id, row.list_version)] = row.drg  # the latest grouping wins
    return drgs


async def latest_groupings(conn: AsyncConnection) -> list[tuple[str, CaseReceived, CaseGrouped]]:
    """Public, for offline commands of other parts: every stored case by case id, with its
    latest list version and that version's latest grouping (without the DIP part)."""
    lists = latest_per_case(cases, "list_version").subquery()
    grouped = latest_per_case(results, "grouping_version", key=("case_id", "list_version")).subquery()
    rows = (await conn.execute(
        select(lists.c.case_id, lists.c.payload, grouped.c.scheme_id, grouped.c.code_mode, grouped.c.mdc,
               grouped.c.adrg, grouped.c.drg, grouped.c.status, grouped.c.grouping_version)
        .join(grouped, and_(grouped.c.case_id == lists.c.case_id,
                            grouped.c.list_version == lists.c.list_version))
        .order_by(lists.c.case_id))).all()
    out = []
    for r in rows:
        received = CaseReceived.model_validate_json(r.payload)
        out.append((r.case_id, received, CaseGrouped(
            facts=received.facts, scheme_id=r.scheme_id, code_mode=r.code_mode, mdc=r.mdc, adrg=r.adrg,
            drg=r.drg, status=r.status, grouping_version=r.grouping_version)))
    return out


# --- scheme registrations ------------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """A scheme (by its folder) in force in a region from `valid_from` to `valid_to`."""

    scheme_id: str
    region: str
    valid_from: date
    valid_to: date | None
    path: str


async def scheme_registrations(conn: AsyncConnection) -> list[Registration]:
    return [Registration(r.scheme_id, r.region, r.valid_from, r.valid_to, r.path)
            for r in (await conn.execute(select(registrations))).all()]


async def register_scheme(conn: AsyncConnection, reg: Registration) -> None:
    """Store a registration (a re-import of the same scheme, region and start replaces it)."""
    c = registrations.c
    await conn.execute(delete(registrations).where(
        c.scheme_id == reg.scheme_id, c.region == reg.region, c.valid_from == reg.valid_from))
    await conn.execute(insert(registrations).values(
        scheme_id=reg.scheme_id, region=reg.region, valid_from=reg.valid_from, valid_to=reg.valid_to,
        path=reg.path, imported_at=datetime.now(UTC)))


# --- DIP catalogues ------------------------------------------------------------------------------

def catalogue_book() -> Versions[Catalogue]:
    """Registered DIP catalogues, each version parsed once; which is in force is read per batch."""
    return Versions(dip_catalogues, "catalogue_id", lambda row: Catalogue.from_document(orjson.loads(row.document)))


async def register_catalogue(conn: AsyncConnection, reg: CatalogueRegistration) -> None:
    """Store a DIP catalogue for a region from a date (a re-import replaces it)."""
    cat, c = reg.catalogue, dip_catalogues.c
    await conn.execute(delete(dip_catalogues).where(
        c.catalogue_id == cat.catalogue_id, c.version == cat.version,
        c.region == reg.region, c.valid_from == reg.valid_from))
    await conn.execute(insert(dip_catalogues).values(
        catalogue_id=cat.catalogue_id, version=cat.version, region=reg.region,
        valid_from=reg.valid_from, valid_to=reg.valid_to, document=reg.document,
        imported_at=datetime.now(UTC)))
