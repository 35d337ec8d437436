"""Grouper service: groups every received case with the scheme in force, stores result and trace.

The grouping itself is the pure engine in `services.grouper.core`; this module only stores,
chooses the scheme (region + discharge date) and announces `case-grouped`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.grouper.config import GrouperSettings
from services.grouper.core import RegistryError, Scheme, SchemeError, SchemeRegistry, load_scheme
from shared.db import insert_many
from shared.dip import Catalogue, DipCase, DipGrouping, assign, dip_case_from_received
from shared.errors import DomainError
from shared.events import CASE_RECEIVED, CaseFacts, CaseGrouped, CaseReceived, Envelope
from shared.messaging import Outbox
from shared.periods import InForce, Versions
from shared.runtime import Context, Stage

NAME = "grouper"
metadata = MetaData()
cases = Table(
    "grouper_cases", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("list_version", Integer, primary_key=True),
    Column("region", String(32), nullable=False),
    Column("discharge_date", Date, nullable=True),
    Column("correlation_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
)
results = Table(
    "grouper_results", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
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

NO_SCHEME = "NO_SCHEME"


# --- DIP (§5): the catalogue in force is applied alongside CHS-DRG ------------------------------

async def import_catalogue(engine: AsyncEngine, document_bytes: bytes, region: str,
                           valid_from: date, valid_to: date | None = None) -> Catalogue:
    """Register a DIP catalogue document for a region from a date (re-import replaces it)."""
    catalogue = Catalogue.from_document(orjson.loads(document_bytes))
    if valid_to is not None and valid_to < valid_from:
        raise ValueError(f"valid_to {valid_to} is before valid_from {valid_from}")
    c = dip_catalogues.c
    async with engine.begin() as conn:
        await conn.execute(delete(dip_catalogues).where(
            c.catalogue_id == catalogue.catalogue_id, c.version == catalogue.version,
            c.region == region, c.valid_from == valid_from))
        await conn.execute(insert(dip_catalogues).values(
            catalogue_id=catalogue.catalogue_id, version=catalogue.version, region=region,
            valid_from=valid_from, valid_to=valid_to, document=document_bytes.decode(),
            imported_at=datetime.now(UTC)))
    return catalogue


def catalogue_book() -> Versions[Catalogue]:
    """Registered DIP catalogues, each version parsed once; which is in force is read per batch."""
    return Versions(dip_catalogues, "catalogue_id", lambda row: Catalogue.from_document(orjson.loads(row.document)))


def dip_grouping(catalogue: Catalogue, case_id: str, received: CaseReceived) -> DipGrouping:
    """The `case-grouped` `dip` field: the case's one DIP group, its trace and the DIP inputs
    the pricer needs (`DipCase`), from the `case-received` payload."""
    return DipGrouping.of(catalogue, dip_case_from_received(case_id, received, {}))


class SchemeBook:
    """The schemes this process knows, and which one is in force where and when."""

    def __init__(self, default_scheme: str) -> None:
        self.default_scheme = default_scheme
        self.schemes: dict[str, Scheme] = {}
        self.paths: dict[str, str] = {}
        self.registry = SchemeRegistry()
        self.regions: set[str] = set()

    def load(self, path: str | Path) -> Scheme:
        path = str(Path(path).resolve())
        for sid, p in self.paths.items():
            if p == path:
                return self.schemes[sid]
        scheme = load_scheme(path)
        self.schemes[scheme.id] = scheme
        self.paths[scheme.id] = path
        return scheme

    def load_folder(self, folder: Path) -> None:
        for sub in sorted(folder.iterdir()):
            if (sub / "scheme.json").is_file():
                self.load(sub)

    def register(self, scheme: Scheme, region: str, valid_from: date, valid_to: date | None) -> None:
        self.registry.add(scheme, region, valid_from, valid_to)
        self.regions.add(region)

    def scheme_for(self, region: str, discharge: date | None) -> Scheme | None:
        """The scheme in force; regions never registered use the default scheme."""
        if region in self.regions and discharge is not None:
            try:
                return self.registry.scheme_for(region, discharge)
            except RegistryError:
                return None
        return self.schemes.get(self.default_scheme)


def engine_input(p: CaseReceived) -> dict[str, Any]:
    return {"sex": p.sex, "age": p.age, "age_days": p.age_days, "birth_weight": p.birth_weight,
            "diagnoses": p.diagnoses, "procedures": p.procedures}


@dataclass(frozen=True)
class ToGroup:
    """One list version to group: its `case-received` payload (as JSON and as the model)."""

    case_id: str
    correlation_id: str
    received: dict[str, Any]
    payload: CaseReceived

    @classmethod
    def from_json(cls, case_id: str, correlation_id: str, received: dict[str, Any]) -> ToGroup:
        return cls(case_id, correlation_id, received, CaseReceived.model_validate(received))


async def group_and_store(conn: AsyncConnection, items: Sequence[ToGroup], *,
                          scheme_for: Callable[[CaseFacts], Scheme | None], code_mode: str,
                          catalogues: InForce[Catalogue]) -> list[Envelope]:
    """Group each list version, store each result with its trace as a new grouping version,
    and return the `case-grouped` events to publish (in the order of `items`).

    The DIP group of the catalogue in force where care was given (§5, §7), if any, rides
    along: stored in `dip_group`, its trace under "dip" in the stored trace, and carried on
    the event (the pricer uses it when a DIP policy is in force)."""
    r = results.c
    keys = {(i.case_id, i.payload.facts.list_version) for i in items}
    latest: dict[tuple[str, int], int] = {(row.case_id, row.list_version): row.v for row in (
        await conn.execute(select(r.case_id, r.list_version, func.max(r.grouping_version).label("v"))
                           .where(r.case_id.in_({k[0] for k in keys}))
                           .group_by(r.case_id, r.list_version))).all()}
    rows: list[dict[str, Any]] = []
    events: list[Envelope] = []
    now = datetime.now(UTC)
    for item in items:
        f = item.payload.facts
        scheme = scheme_for(f)
        trace: str | None = None
        if scheme is None:
            mdc, adrg, drg, status, name, scheme_id = "0000", "00", "0000", NO_SCHEME, None, "-"
        else:
            g = scheme.group(engine_input(item.payload), code_mode=code_mode, trace=True)
            mdc, adrg, drg, status, name, scheme_id = g.mdc, g.adrg, g.drg, g.status, g.drg_name, scheme.id
            trace = g.trace.to_json().decode() if g.trace is not None else None
        catalogue = catalogues.on(f.treatment_region or f.region, f.discharge_date)
        dip = None if catalogue is None else dip_grouping(catalogue, item.case_id, item.payload)
        if dip is not None:
            trace = orjson.dumps((orjson.loads(trace) if trace else {}) | {
                "dip": dip.model_dump(mode="json", exclude={"case"})}).decode()
        key = (item.case_id, f.list_version)
        version = latest[key] = latest.get(key, 0) + 1
        rows.append(dict(
            case_id=item.case_id, list_version=f.list_version, grouping_version=version,
            scheme_id=scheme_id, code_mode=code_mode, mdc=mdc, adrg=adrg, drg=drg, status=status,
            trace=trace, grouped_at=now, dip_group=dip.group if dip is not None else None))
        payload = CaseGrouped(facts=f, scheme_id=scheme_id, code_mode=code_mode,  # type: ignore[arg-type]
                              mdc=mdc, adrg=adrg, drg=drg, status=status, drg_name=name,
                              grouping_version=version, dip=dip)
        events.append(Envelope.new(payload, case_id=item.case_id, correlation_id=item.correlation_id,
                                   producer=NAME))
    await insert_many(conn, results, rows)
    return events


class DraftCase(BaseModel):
    """A case to check before it is submitted (the testdata case format)."""

    model_config = ConfigDict(extra="ignore")
    sex: Any = None
    age: Any = None
    age_days: Any = None
    birth_weight: Any = None
    diagnoses: list[str] = Field(default_factory=list)
    procedures: list[str] = Field(default_factory=list)
    region: str = "default"
    discharge_date: date | None = None
    scheme: str | None = Field(None, description="scheme id; default: the one in force")
    code_mode: Literal["raw", "mapped"] | None = None


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GrouperSettings) else GrouperSettings()
    book = SchemeBook(settings.default_scheme)
    catalogues = catalogue_book()
    outbox = Outbox(NAME, metadata)

    async def on_start() -> None:
        if settings.schemes_dir is not None:
            book.load_folder(settings.schemes_dir)
        async with ctx.engine.connect() as conn:
            for reg in (await conn.execute(select(registrations))).all():
                book.register(book.load(reg.path), reg.region, reg.valid_from, reg.valid_to)
        if not book.schemes:
            raise SchemeError("no grouping scheme loaded: set DRGDIP_SCHEMES_DIR or import one")

    def scheme_for(f: CaseFacts) -> Scheme | None:
        return book.scheme_for(f.region, f.discharge_date)

    async def handle(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        items = [ToGroup.from_json(e.case_id, e.correlation_id, e.payload) for e in envs]
        await insert_many(conn, cases, [dict(
            case_id=i.case_id, list_version=i.payload.facts.list_version, region=i.payload.facts.region,
            discharge_date=i.payload.facts.discharge_date, correlation_id=i.correlation_id,
            payload=orjson.dumps(i.received).decode()) for i in items])
        return await group_and_store(conn, items, scheme_for=scheme_for, code_mode=settings.code_mode,
                                     catalogues=await catalogues.in_force(conn))

    router = APIRouter(tags=["grouper"])

    @router.post("/group")
    async def group_one(draft: DraftCase, trace: bool = True) -> dict:
        if draft.scheme is not None:
            scheme = book.schemes.get(draft.scheme)
            if scheme is None:
                raise DomainError(f"no scheme {draft.scheme!r} is loaded", code="UNKNOWN_SCHEME", status=404, field="scheme")
        else:
            scheme = book.scheme_for(draft.region, draft.discharge_date)
            if scheme is None:
                raise DomainError(f"no scheme in force for region {draft.region} on {draft.discharge_date}", code="NO_SCHEME_IN_FORCE", status=422, field="discharge_date")
        r = scheme.group(draft.model_dump(), code_mode=draft.code_mode or settings.code_mode, trace=trace)
        out = {"scheme_id": scheme.id, **r.to_dict(), "drg_name": r.drg_name}
        if trace and r.trace is not None:
            out["trace"] = r.trace.to_dict()
            out["explanation"] = r.trace.render()
        # where a DIP catalogue is in force, the case's DIP group too (as the live stage assigns it)
        day = draft.discharge_date
        async with ctx.engine.connect() as conn:
            catalogue = (await catalogues.in_force(conn)).on(draft.region, day)
        if catalogue is not None and day is not None:
            a = assign(catalogue, DipCase(
                case_id="draft", year=day.year, discharge_date=day, region=draft.region,
                principal_diagnosis=draft.diagnoses[0] if draft.diagnoses else "",
                secondary_diagnoses=tuple(draft.diagnoses[1:]), procedures=tuple(draft.procedures),
                total_cost="0"))
            out["dip"] = {"catalogue_id": catalogue.catalogue_id, "catalogue_version": catalogue.version,
                          "group": a.code, "kind": a.kind, "treatment_type": a.treatment_type.value,
                          "trace": list(a.trace)}
        return out

    @router.post("/dip/catalogues", status_code=201)
    async def register_catalogue(request: Request, region: str = Query(min_length=1, max_length=32),
                                 valid_from: date = Query(), valid_to: date | None = Query(None)) -> dict:
        """Register a DIP catalogue document for a region from a date (bureau only, via the gateway)."""
        try:
            catalogue = await import_catalogue(ctx.engine, await request.body(), region, valid_from, valid_to)
        except (ValueError, TypeError) as e:  # not JSON, or not a catalogue document
            raise DomainError(f"body: {e}"[:500], code="INVALID_CATALOGUE", status=422, field="body") from None
        return {"catalogue_id": catalogue.catalogue_id, "version": catalogue.version, "region": region,
                "groups": len(catalogue.groups)}

    @router.get("/schemes")
    async def list_schemes() -> list[dict]:
        return [{"id": s.id, "title": s.title, "path": book.paths[s.id]} for s in book.schemes.values()]

    return Stage(NAME, metadata, outbox, router=router,
                 subscriptions=[((CASE_RECEIVED,), handle)], on_start=on_start)
