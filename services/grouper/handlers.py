"""The grouper's event consumer, and the grouping path it shares with a regroup.

Every received list version is stored, grouped with the scheme in force for its region and
discharge date (with its DIP group where a catalogue is in force, §5) and announced as
`case-grouped`. A regroup takes the stored cases through the same path with another scheme.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.grouper import repository
from services.grouper.config import GrouperSettings
from services.grouper.domain import (
    Grouping,
    Migration,
    RegistryError,
    Scheme,
    SchemeBook,
    SchemeError,
    SchemeRegistry,
    ToGroup,
    group_cases,
)
from shared.dip import Catalogue
from shared.errors import NotFound
from shared.events import CaseFacts, Envelope
from shared.messaging import Outbox
from shared.observability import get_logger
from shared.periods import InForce

log = get_logger("drgdip.grouper")


class GrouperService:
    """The grouper stage's own object (`Stage.service`): its settings, the schemes it knows and
    the registered DIP catalogues (each version parsed once)."""

    def __init__(self, settings: GrouperSettings) -> None:
        self.settings = settings
        self.book = SchemeBook(settings.default_scheme)
        self.catalogues = repository.catalogue_book()
        self._registrations: list[repository.Registration] | None = None

    async def load_schemes(self, conn: AsyncConnection) -> None:
        """The schemes of `schemes_dir` and the registered ones, with their registrations."""
        if self.settings.schemes_dir is not None:
            self.book.load_folder(self.settings.schemes_dir)
        await self.refresh(conn)
        if not self.book.schemes:
            raise SchemeError("no grouping scheme loaded: set DRGDIP_SCHEMES_DIR or import one")

    async def refresh(self, conn: AsyncConnection) -> None:
        """Put scheme registrations made since the last look in force (`drgdip scheme import`
        while the grouper runs): one small query per batch; a changed set rebuilds the book."""
        registrations = await repository.scheme_registrations(conn)
        if registrations == self._registrations:
            return
        book = SchemeBook(self.settings.default_scheme)
        book.schemes, book.paths = dict(self.book.schemes), dict(self.book.paths)
        try:
            for reg in registrations:
                book.register(book.load(reg.path), reg.region, reg.valid_from, reg.valid_to)
        except (SchemeError, RegistryError) as e:  # an unreadable folder, overlapping periods
            if self._registrations is None:
                raise  # at start: refuse to run on a registry that cannot be built
            # while running: keep grouping under the registrations in force, say why once
            log.error("scheme registrations not applied", error=e.message, code=e.code)
            self._registrations = registrations
            return
        self.book, self._registrations = book, registrations

    def scheme_for(self, f: CaseFacts) -> Scheme | None:
        return self.book.scheme_for(f.region, f.discharge_date)


async def register_scheme(grouper: GrouperService, conn: AsyncConnection, scheme_id: str, region: str,
                          valid_from: date, valid_to: date | None) -> tuple[Scheme, bool]:
    """Register a loaded scheme for a region and period; (scheme, replaced). The grouper puts it
    in force with its next batch (`GrouperService.refresh`).

    Refused: a scheme this grouper has not loaded (404 `UNKNOWN_SCHEME`), a period ending
    before it starts (422 `INVALID_PERIOD`), a period overlapping another registration of the
    region (409 `OVERLAPPING_PERIODS`). The same scheme, region and start replaces its
    registration, as `drgdip scheme import` does."""
    scheme = grouper.book.schemes.get(scheme_id)
    if scheme is None:
        known = ", ".join(sorted(grouper.book.schemes)) or "none"
        raise NotFound(f"no scheme {scheme_id!r} is loaded (loaded: {known})", code="UNKNOWN_SCHEME",
                       field="scheme")
    await grouper.refresh(conn)  # the registrations stored now, as the grouper holds them
    replaced = False
    try:
        SchemeRegistry().add(scheme, region, valid_from, valid_to)  # the period on its own
        for other in grouper.book.registry.entries(region):
            if (other.scheme.id, other.valid_from) == (scheme_id, valid_from):
                replaced = True
                continue
            # one stored period at a time: an older overlap among them is not this request's fault
            SchemeRegistry([other]).add(scheme, region, valid_from, valid_to)
    except RegistryError as e:
        raise RegistryError(e.message, code=e.code, status=e.status,
                            field="valid_to" if e.code == "INVALID_PERIOD" else "valid_from") from None
    await repository.register_scheme(conn, repository.Registration(
        scheme_id, region, valid_from, valid_to, grouper.book.paths[scheme_id]))
    return scheme, replaced


async def on_case_received(grouper: GrouperService, conn: AsyncConnection,
                           envs: Sequence[Envelope]) -> list[Envelope]:
    """Store and group a batch of received list versions (each table read and written once)."""
    items = await asyncio.to_thread(
        lambda: [ToGroup.from_json(e.case_id, e.correlation_id, e.payload) for e in envs])
    await grouper.refresh(conn)
    await repository.insert_received(conn, items)
    groupings = await group_and_store(conn, items, scheme_for=grouper.scheme_for,
                                      code_mode=grouper.settings.code_mode,
                                      catalogues=await grouper.catalogues.in_force(conn))
    return await asyncio.to_thread(announcements, groupings)


async def group_and_store(conn: AsyncConnection, items: Sequence[ToGroup], *,
                          scheme_for: Callable[[CaseFacts], Scheme | None], code_mode: str,
                          catalogues: InForce[Catalogue]) -> list[Grouping]:
    """Group each list version as a new grouping version and store each result with its trace
    (in the order of `items`)."""
    latest = await repository.latest_grouping_versions(conn, {i.case_id for i in items})
    # grouping a batch is CPU work: off the event loop, which keeps serving meanwhile
    groupings = await asyncio.to_thread(lambda: group_cases(
        items, scheme_for=scheme_for, catalogue_on=catalogues.on, code_mode=code_mode, latest=latest))
    await repository.insert_results(conn, groupings)
    return groupings


def announcements(groupings: Sequence[Grouping]) -> list[Envelope]:
    """The `case-grouped` events to publish, one per grouping, in order."""
    return [Envelope.new(g.event, case_id=g.case_id, correlation_id=g.correlation_id,
                         producer=repository.NAME) for g in groupings]


async def regroup(engine: AsyncEngine, outbox: Outbox, scheme: Scheme, *, code_mode: str = "raw",
                  date_from: date | None = None, date_to: date | None = None, batch: int = 500,
                  progress: Callable[[int, int], None] | None = None) -> Migration:
    """Regroup the latest list version of every stored case discharged in [date_from, date_to]
    under `scheme`: each gets a new grouping version and a new `case-grouped` event (through the
    outbox, so the running grouper publishes it and the pricer re-prices). The DIP group rides
    along as in the live stage, so a DIP period stays DIP. Returns the DRG migration table.

    One transaction per `batch` cases, so that regrouping a province's year never holds the
    database (the live stages keep working); each batch is regrouped and announced whole."""
    async with engine.begin() as conn:
        stored = await repository.latest_lists(conn, date_from, date_to)
        catalogues = await repository.catalogue_book().in_force(conn)
    migration = Migration(scheme.id)
    for start in range(0, len(stored), batch):
        chunk = [s.to_group() for s in stored[start:start + batch]]
        async with engine.begin() as conn:
            before = await repository.latest_drgs(conn, [i.case_id for i in chunk])
            groupings = await group_and_store(conn, chunk, scheme_for=lambda _facts: scheme,
                                              code_mode=code_mode, catalogues=catalogues)
            await outbox.add(conn, announcements(groupings))
        outbox.wakeup.set()
        migration.record(before, groupings)
        if progress:
            progress(migration.cases, len(stored))
    return migration
