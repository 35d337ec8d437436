"""The grouper's event consumer, and the grouping path it shares with a regroup.

Every received list version is stored, grouped with the scheme in force for its region and
discharge date (with its DIP group where a catalogue is in force, §5) and announced as
`case-grouped`. A regroup takes the stored cases through the same path with another scheme.

A local scheme's change set (docs/scheme-changesets.md) is checked against the loaded base
scheme, with one hospital's migration table when asked (`check_change_set`), and built into
the local schemes folder, loaded and optionally registered (`build_change_set`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.grouper import repository
from services.grouper.config import GrouperSettings
from services.grouper.domain import (
    ChangeSet,
    Grouping,
    Migration,
    RegistryError,
    Scheme,
    SchemeBook,
    SchemeDocs,
    SchemeError,
    SchemeRegistry,
    ToGroup,
    apply_change_set,
    change_summary,
    compile_local_scheme,
    diff_schemes,
    engine_input,
    group_cases,
    load_scheme,
    migration_table,
    parse_change_set,
    read_scheme_docs,
    write_scheme_folder,
)
from services.grouper.domain.changeset import Problem, change_set_error
from shared.dip import Catalogue
from shared.errors import Conflict, Invalid, NotFound, Unavailable
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
        local = self.settings.local_schemes_dir
        if local is not None and local.is_dir():  # schemes built from change sets earlier
            self.book.load_folder(local)
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


# --- local schemes from change sets ---------------------------------------------------------------

def _apply(book: SchemeBook, raw: bytes) -> tuple[ChangeSet, Scheme, SchemeDocs]:
    """The change set parsed and applied to its loaded base scheme (422 `INVALID_CHANGESET`
    naming each operation and field; a base the grouper has not loaded is one of them)."""
    cs = parse_change_set(raw)
    base = book.schemes.get(cs.base)
    if base is None or base.path is None:
        known = ", ".join(sorted(book.schemes)) or "none"
        raise change_set_error([Problem("base", f"the grouper has not loaded a scheme {cs.base!r} "
                                                f"(loaded: {known})")])
    return cs, base, apply_change_set(base, read_scheme_docs(base), cs)


async def check_change_set(grouper: GrouperService, conn: AsyncConnection, raw: bytes,
                           hospital: str | None) -> dict[str, Any]:
    """What a change set changes in its base scheme (groups added, split, merged, renamed; lists)
    and, for a hospital, its own cases' migration table: each of its stored cases (latest list
    version) grouped under the base and under the local scheme compiled in memory, through the
    scheme diff (the one grouping path). Nothing is written."""
    lists = await repository.hospital_lists(conn, hospital) if hospital is not None else None
    code_mode = grouper.settings.code_mode

    def run() -> dict[str, Any]:  # reading, compiling and regrouping are CPU work: off the event loop
        cs, base, docs = _apply(grouper.book, raw)
        local = compile_local_scheme(base, docs)
        d = diff_schemes(base, local, None if lists is None else [engine_input(r) for r in lists], code_mode)
        out = {"changeset": cs.summary(), "base": base.id, "summary": change_summary(d)}
        if lists is not None:
            out["migration"] = {"hospital_code": hospital, "code_mode": code_mode, **migration_table(d)}
        return out

    return await asyncio.to_thread(run)


async def build_change_set(grouper: GrouperService, conn: AsyncConnection, raw: bytes, *,
                           region: str | None = None, valid_from: date | None = None,
                           valid_to: date | None = None) -> dict[str, Any]:
    """Build the local scheme of a change set over its loaded base into the local schemes folder
    (`<local_schemes_dir>/<change set id>`, its `scheme.json` recording the base, the change set's
    id and SHA-256), load it, and with `valid_from` register it for `region` (default: the change
    set's) as `POST /schemes/registrations` does.

    The same change set again (same id and hash) reuses its folder, so a retried adoption builds
    nothing twice; another change set under an id already built or loaded is refused (409
    `SCHEME_EXISTS`)."""
    root = grouper.settings.local_schemes_dir
    if root is None:
        raise Unavailable("the grouper has no folder for local schemes: set DRGDIP_LOCAL_SCHEMES_DIR",
                          code="LOCAL_SCHEMES_DIR_UNSET")
    if valid_from is None and (region is not None or valid_to is not None):
        raise Invalid("give valid_from to register the scheme built", code="VALID_FROM_REQUIRED", field="valid_from")

    def build() -> tuple[ChangeSet, Scheme, Scheme, bool]:
        cs, base, docs = _apply(grouper.book, raw)
        out = (root / cs.id).resolve()
        loaded = grouper.book.paths.get(cs.id)
        if loaded is not None and loaded != str(out):
            raise Conflict(f"a scheme {cs.id!r} is loaded from {loaded}: give the change set another id",
                           code="SCHEME_EXISTS", field="id")
        if (out / "scheme.json").is_file():
            built = json.loads((out / "scheme.json").read_text("utf-8"))
            sha = ((built.get("derived_from") or {}).get("changeset") or {}).get("sha256")
            if sha != cs.sha256:
                raise Conflict(f"another change set {cs.id!r} was built already (sha256 {sha}): give this "
                               "one another id", code="SCHEME_EXISTS", field="id")
            return cs, base, load_scheme(out), False
        root.mkdir(parents=True, exist_ok=True)
        work = root / f".{cs.id}.{uuid.uuid4().hex}"  # written whole, then renamed into place
        try:
            write_scheme_folder(base, docs, work, raw)
            work.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return cs, base, load_scheme(out), True

    cs, base, local, built = await asyncio.to_thread(build)
    grouper.book.put(local)
    summary = await asyncio.to_thread(lambda: change_summary(diff_schemes(base, local)))
    answer: dict[str, Any] = {"scheme": local.id, "title": local.title, "base": base.id,
                              "changeset": cs.summary(), "path": grouper.book.paths[local.id], "built": built,
                              "summary": summary, "registration": None}
    if valid_from is not None:
        where = region or cs.region
        _scheme, replaced = await register_scheme(grouper, conn, local.id, where, valid_from, valid_to)
        answer["registration"] = {"region": where, "valid_from": valid_from.isoformat(),
                                  "valid_to": valid_to.isoformat() if valid_to else None, "replaced": replaced}
    return answer


async def on_case_received(grouper: GrouperService, conn: AsyncConnection,
                           envs: Sequence[Envelope]) -> list[Envelope]:
    """Store and group a batch of received list versions (each table read and written once)."""
    items = await asyncio.to_thread(
        lambda: [ToGroup(e.case_id, e.correlation_id, e.payload_json.decode(), e.typed_payload()) for e in envs])
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
