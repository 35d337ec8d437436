"""The gateway's tables and every query on them. Takes the caller's connection; never commits."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    cast,
    delete,
    distinct,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway.domain import indicators as ind
from services.gateway.domain.auth import NewSession, Principal, expiry, issue_token, open_session
from services.gateway.domain.readmodel import ORDER, CaseRef, Filed, Stored, group_of, is_flagged
from shared.db import (
    ROW_ID,
    ExactDecimal,
    bind_processor,
    insert_statement,
    money,
    update_many,
    upsert_statement,
)
from shared.events import Envelope

NAME = "gateway"
metadata = MetaData()
cases = Table(
    "gateway_cases", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("hospital_code", String(32), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("flagged", Boolean, nullable=False, server_default=false()),  # review raised a flag
    Column("group_code", String(32), nullable=True),  # the DRG (else DIP group) it was grouped into
    # what the case adds to its indicator cell (domain/indicators.py Contribution as JSON): taken
    # out again when the case's view changes
    Column("indicator", Text, nullable=True),
    # the facts of its current list version the contribution reads (indicators.FACT_FIELDS, JSON)
    Column("facts", Text, nullable=True),
    # the stages holding a result (gateway_case_results), one bit each (STAGE_BITS): the fold's
    # read of the stored cases needs no lookup of their results
    Column("stages", Integer, nullable=False, server_default="0"),
    Index("ix_gateway_cases_group", "hospital_code", "group_code"),
    # a hospital's cases in id order (of one status too: status is in no index, so that a stage's
    # event updates the row in place on PostgreSQL, gateway_0012)
    Index("ix_gateway_cases_hospital_id", "hospital_code", "case_id"),
)
# Each case's stage results (domain/readmodel.py ORDER: the latest of its current list version,
# JSON as the read model keeps it), one row per (case, stage): an event writes its own result
# only, and the case's row stays small (SQLite: the rows kept in key order, a case's together).
case_results = Table(
    "gateway_case_results", metadata,
    Column("case_id", String(100), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("result", Text, nullable=False),
    PrimaryKeyConstraint("case_id", "stage", name="pk_gateway_case_results"),
)


def _cell_key() -> list[Column]:
    return [Column("region", String(32), nullable=False), Column("month", String(7), nullable=False),
            Column("hospital_code", String(32), nullable=False), Column("hospital_level", Integer, nullable=False),
            Column("dept", String(32), nullable=False), Column("scheme_id", String(64), nullable=False),
            Column("drg", String(32), nullable=False)]


def _sums() -> list[Column]:
    return [*[Column(n, BigInteger, nullable=False, server_default="0") for n in ind.COUNTS],
            Column("weight_sum", ExactDecimal(18, 4), nullable=False, server_default="0"),
            *[Column(n, money(), nullable=False, server_default="0") for n in ind.MONEY]]


# The indicators' aggregates (domain/indicators.py): counts and sums per cell, updated with the
# read model; a quarter or a year is the sum of its months.
indicator_cells = Table(
    "gateway_indicator_cells", metadata, *_cell_key(), *_sums(),
    PrimaryKeyConstraint(*ind.KEY, name="pk_gateway_indicator_cells"),
    Index("ix_gateway_indicator_cells_month", "region", "month"),
    Index("ix_gateway_indicator_cells_by_month", "month"),  # the periods of every region
)
indicator_rules = Table(
    "gateway_indicator_rules", metadata, *_cell_key(),
    Column("rule", String(40), nullable=False),
    Column("flagged", BigInteger, nullable=False, server_default="0"),  # cases the rule flagged
    PrimaryKeyConstraint(*ind.KEY, "rule", name="pk_gateway_indicator_rules"),
    Index("ix_gateway_indicator_rules_by_month", "month"),
)


def _rollup(name: str, columns: tuple[str, ...]) -> Table:
    """A rollup of the cells (domain/indicators.py ROLLUPS): their sums per (period, *columns),
    period a month (YYYY-MM), a quarter (YYYYQn) or a year (YYYY)."""
    key = {c.name: c for c in _cell_key()}
    return Table(f"gateway_indicator_{name}", metadata, Column("period", String(7), nullable=False),
                 *[key[c] for c in columns], *_sums(),
                 PrimaryKeyConstraint("period", *columns, name=f"pk_gateway_indicator_{name}"),
                 sqlite_with_rowid=False)  # SQLite: the rows kept in key order (a period's rows together)


rollups: dict[str, Table] = {name: _rollup(name, cols) for name, cols in ind.ROLLUPS.items()}
# A batch's changes to the cells, held only inside the batch's transaction (emptied before it
# ends): the cells and every rollup add them up in the database, one statement each.
indicator_changes = Table("gateway_indicator_changes", metadata, *_cell_key(), *_sums())
# The cases per (hospital, status), kept with the read model: /summary reads a few rows.
case_counts = Table(
    "gateway_case_counts", metadata,
    Column("hospital_code", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("cases", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("hospital_code", "status", name="pk_gateway_case_counts"),
)

# Reports as issued (domain/reports.py Report as JSON): the monthly feedback stored after each
# pre-settlement (`period-settled`), the quarterly bulletin by `drgdip report bulletin`; a new
# issue of the same report is a new version, never an overwrite.
reports = Table(
    "gateway_reports", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("scope", String(32), nullable=False),  # the hospital (feedback) or the region
    Column("period", String(7), nullable=False),
    Column("version", Integer, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("issued_by", String(128), nullable=False),  # "settlement:<policy>:v<n>" or the actor
    Column("document", Text, nullable=False),
    UniqueConstraint("kind", "scope", "period", "version", name="uq_gateway_reports_version"),
)
# Performance evaluations (domain/performance.py): who computed it, when, with which parameter
# version, every hospital's components and points; a yearly one may be adopted (its deposit
# return shares go to the pricer's clearing).
evaluations = Table(
    "gateway_evaluations", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("period", String(6), nullable=False),  # YYYYQn or YYYY
    Column("parameters_version", Integer, nullable=False),  # 0: the defaults
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
    Column("evaluated_by", String(128), nullable=False),
    Column("document", Text, nullable=False),
    Column("adopted_at", DateTime(timezone=True), nullable=True),
    Column("adopted_by", String(128), nullable=True),
    Index("ix_gateway_evaluations_period", "region", "period"),
)
evaluation_parameters = Table(
    "gateway_evaluation_parameters", metadata,
    Column("region", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("valid_from", String(4), nullable=False),  # the first year it applies to
    Column("document", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    PrimaryKeyConstraint("region", "version", name="pk_gateway_evaluation_parameters"),
)
timeline = Table(
    "gateway_timeline", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("producer", String(32), nullable=False),
    Index("ix_gateway_timeline_case", "case_id"),
)
tokens = Table(
    "gateway_tokens", metadata,
    Column("token_id", String(16), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("hospital_code", String(32), nullable=True),
    Column("label", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),  # None: never expires
)
# Dashboard sign-ins (domain/auth.py): the cookie's session id is stored only as its hash; the
# session acts with its token's role and hospital, and ends with the token's revocation.
sessions = Table(
    "gateway_sessions", metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("token_id", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_gateway_sessions_expires", "expires_at"),
)
# Append-only (services/gateway/domain/audit.py): rows are inserted, never updated or deleted.
audit = Table(
    "gateway_audit", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("token_id", String(16), nullable=True),
    Column("role", String(32), nullable=True),
    Column("action", String(64), nullable=False),
    Column("subject", String(128), nullable=True),
    Column("detail", Text, nullable=True),
    Column("actor", String(128), nullable=True),  # token:<id> or cli:<user>
    Column("client", String(64), nullable=True),  # the caller's address (API)
    Index("ix_gateway_audit_at", "at"),
)


# ---------------------------------------------------------------- the read model (consumer)

async def add_timeline(conn: AsyncConnection, envs: Sequence[Envelope], refs: Sequence[CaseRef]) -> None:
    """One timeline row per event (the insert compiled once per dialect, its rows bound as tuples)."""
    if not envs:
        return
    if conn.dialect.name == "postgresql":  # one INSERT ... SELECT FROM unnest: one execution, not one a row
        rows = ((env.case_id, env.event_id, env.event_type, ref.list_version, env.occurred_at, env.producer)
                for env, ref in zip(envs, refs, strict=True))
        await conn.exec_driver_sql(*await asyncio.to_thread(insert_statement, conn.dialect, timeline, _TIMELINE, rows))
        return
    sql, at = _timeline_insert(conn.dialect)

    def params() -> list[tuple[Any, ...]]:
        return [(env.case_id, env.event_id, env.event_type, ref.list_version, at(env.occurred_at), env.producer)
                for env, ref in zip(envs, refs, strict=True)]

    await conn.exec_driver_sql(sql, await asyncio.to_thread(params) if len(envs) > 50 else params())


_TIMELINE = ("case_id", "event_id", "event_type", "list_version", "occurred_at", "producer")
_timeline_compiled: dict[str, tuple[str, Any]] = {}


def _timeline_insert(dialect: Dialect) -> tuple[str, Any]:
    """The timeline's insert for this dialect, and the occurred_at column's bind processor (the
    other columns have none)."""
    found = _timeline_compiled.get(dialect.name)
    if found is None:
        compiled = insert(timeline).values({c: bindparam(c, type_=timeline.c[c].type) for c in _TIMELINE}
                                           ).compile(dialect=dialect)
        if tuple(compiled.positiontup or ()) != _TIMELINE or any(
                _bind_processor(timeline.c[c].type, dialect) for c in _TIMELINE if c != "occurred_at"):
            raise ValueError("gateway_timeline: cannot prepare the insert")
        found = _timeline_compiled[dialect.name] = (
            str(compiled), _bind_processor(timeline.c.occurred_at.type, dialect) or (lambda at: at))
    return found


def _stored_cases() -> Any:
    """load_cases' query (its ids an expanding parameter: built once, not per batch)."""
    c = cases.c
    return select(c.case_id, c.list_version, c.status, c.indicator, c.facts.is_not(None), c.stages).where(
        c.case_id.in_(bindparam("ids", expanding=True)))


# SQLite: load_cases' (and load_results') query as it is run, its ids one JSON array (one parameter, whatever their
# number: no statement of as many placeholders rendered per batch)
_STORED_CASES_SQLITE = (
    "SELECT c.case_id, c.list_version, c.status, c.indicator, c.facts IS NOT NULL, c.stages "
    "FROM gateway_cases AS c WHERE c.case_id IN (SELECT value FROM json_each(?))")
_STORED_RESULTS_SQLITE = (
    "SELECT case_id, stage, result FROM gateway_case_results WHERE case_id IN (SELECT value FROM json_each(?)) "
    "AND stage IN (SELECT value FROM json_each(?))")
STAGE_BITS = {s: 1 << i for i, s in enumerate(ORDER)}  # gateway_cases.stages: received 1 … reviewed 8
# each value of the stages column as one shared frozenset of its stages
_REACHED = tuple(frozenset(s for s, bit in STAGE_BITS.items() if n & bit) for n in range(1 << len(ORDER)))


def _stage_bits(reached: Collection[str]) -> int:
    """The stages column's value of these stages (STAGE_BITS)."""
    return sum(STAGE_BITS[s] for s in reached)


def _stored_results() -> Any:
    """load_results' query (its ids and stages expanding parameters)."""
    r = case_results.c
    return select(r.case_id, r.stage, r.result).where(r.case_id.in_(bindparam("ids", expanding=True)),
                                                      r.stage.in_(bindparam("stages", expanding=True)))


_STORED_CASES, _STORED_RESULTS = _stored_cases(), _stored_results()


async def load_cases(conn: AsyncConnection, case_ids: Collection[str]) -> dict[str, Stored]:
    """What the fold needs of these stored cases: list version, withdrawn, the stages that hold a
    result (not the results), the indicator contribution and whether facts are kept (not them)."""
    if conn.dialect.name == "sqlite":
        found: Any = await conn.exec_driver_sql(_STORED_CASES_SQLITE, (orjson.dumps(list(case_ids)).decode(),))
    else:
        found = await conn.execute(_STORED_CASES, {"ids": list(case_ids)})
    return {r[0]: Stored(r[1], r[2] == "withdrawn", _REACHED[r[5]], r[3], bool(r[4])) for r in found}


async def load_results(conn: AsyncConnection, wanted: Mapping[str, Collection[str]]) -> dict[str, dict[str, Any]]:
    """The stored stage results (JSON text) of these cases, the stages wanted of each."""
    stages = [s for s in ORDER if any(s in w for w in wanted.values())]
    if not stages:
        return {}
    rows: Any
    if conn.dialect.name == "sqlite":  # its ids one JSON array, as load_cases'
        rows = (await conn.exec_driver_sql(_STORED_RESULTS_SQLITE, (orjson.dumps(list(wanted)).decode(),
                                                                     orjson.dumps(stages).decode()))).all()
    else:
        rows = (await conn.execute(_STORED_RESULTS, {"ids": list(wanted), "stages": stages})).all()
    out: dict[str, dict[str, Any]] = {}
    for cid, stage, result in rows:
        if stage in wanted[cid]:
            out.setdefault(cid, {})[stage] = result
    return out


async def save_views(conn: AsyncConnection, filed: Mapping[str, Filed], stored: Mapping[str, Stored],
                     contributions: Mapping[str, str | None] | None = None,
                     facts: Mapping[str, str] | None = None) -> None:
    """Store the changed cases (with each one's indicator contribution and the facts of its
    current list version it was computed from, JSON): new cases inserted; of a stored one only
    what the batch changed is updated (status when it changed, flagged and group when their
    stage changed, the stages holding a result when they changed, the facts when given: else it
    keeps those it has), one statement per set of columns (each compiled once per dialect, its
    rows bound as tuples). Each stage result the batch set is written to its own row; a stored
    case's results are cleared first when a newer list version replaces them."""
    contributions, facts = contributions or {}, facts or {}
    dialect = conn.dialect
    now = _case_value(dialect, "updated_at", datetime.now(UTC))
    flag = {b: _case_value(dialect, "flagged", b) for b in (False, True)}
    new: list[tuple[Any, ...]] = []
    changed: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    cleared: list[tuple[str]] = []
    results: list[tuple[str, str, str]] = []
    for cid, f in filed.items():
        s = stored.get(cid)
        status = f.status
        names: list[str] = ["list_version", "updated_at", "indicator"]
        values: list[Any] = [f.list_version, now, contributions.get(cid)]
        if s is None or s.status != status:  # its index is updated only when it changes
            names.append("status")
            values.append(status)
        if f.reset or "reviewed" in f.results:
            names.append("flagged")
            values.append(flag[is_flagged(f.results.get("reviewed"))])
        if f.reset or "grouped" in f.results:
            names.append("group_code")
            values.append(group_of(f.results.get("grouped")))
        if s is None or f.reached != s.reached:
            names.append("stages")
            values.append(_stage_bits(f.reached))
        for column, result in f.results.items():
            results.append((cid, column, orjson.dumps(result).decode()))
        if s is not None:
            if f.reset and s.reached:
                cleared.append((cid,))
            if cid in facts:
                names.append("facts")
                values.append(facts[cid])
            names.append("case_id")
            values.append(cid)
            changed.setdefault(tuple(names), []).append(tuple(values))
        else:
            names += ("case_id", "hospital_code", "facts")
            values += (cid, f.hospital_code, facts.get(cid))
            new.append(tuple(values))
    if dialect.name == "postgresql":  # each statement run once, its rows as one array per column
        await _save_views_arrays(conn, new, changed, cleared)
    else:
        if new:  # a new case's row is whole: the same columns each
            sql, order = _case_statement(dialect, _NEW_CASE, False)
            await conn.exec_driver_sql(sql, [order(row) for row in new])
        for names_, rows in changed.items():
            sql, order = _case_statement(dialect, names_, True)
            await conn.exec_driver_sql(sql, [order(row) for row in rows])
        if cleared:
            await conn.exec_driver_sql(_clear_results(dialect), cleared)
    if results:  # a batch names a (case, stage) once
        await conn.exec_driver_sql(*upsert_statement(dialect, case_results, ("case_id", "stage"),
                                                     ("case_id", "stage", "result"), results))


async def _save_views_arrays(conn: AsyncConnection, new: list[tuple[Any, ...]],
                             changed: Mapping[tuple[str, ...], list[tuple[Any, ...]]],
                             cleared: list[tuple[str]]) -> None:
    """save_views' case rows on PostgreSQL: each an INSERT, UPDATE or DELETE of one array per
    column (`unnest`, `= ANY`), run once (executemany runs a statement once per row, and each run
    is an executor start and end in the server). A batch names a case once."""
    dialect = conn.dialect
    if new:
        await conn.exec_driver_sql(*insert_statement(dialect, cases, _NEW_CASE, new))
    for names, rows in changed.items():
        await update_many(conn, cases, "case_id", [dict(zip(names, row, strict=True)) for row in rows])
    if cleared:
        await conn.exec_driver_sql("DELETE FROM gateway_case_results WHERE case_id = ANY($1::VARCHAR(100)[])",
                                   ([c for (c,) in cleared],))


_NEW_CASE = ("list_version", "updated_at", "indicator", "status", "flagged", "group_code", "stages", "case_id",
             "hospital_code", "facts")
_result_clears: dict[str, str] = {}


def _clear_results(dialect: Dialect) -> str:
    """save_views' clearing of a case's stage results (by case_id), compiled once per dialect
    (case_id has no bind processor)."""
    found = _result_clears.get(dialect.name)
    if found is None:
        r = case_results.c
        clear = delete(case_results).where(r.case_id == bindparam("case_id", type_=r.case_id.type)).compile(
            dialect=dialect)
        if tuple(clear.positiontup or ()) != ("case_id",) or _bind_processor(r.case_id.type, dialect):
            raise ValueError("gateway_case_results: cannot prepare the statement")
        found = _result_clears[dialect.name] = str(clear)
    return found


_case_statements: dict[tuple[str, bool, tuple[str, ...]], tuple[str, Any]] = {}


def _case_statement(dialect: Dialect, names: tuple[str, ...], update_: bool) -> tuple[str, Any]:
    """save_views' insert (or update by case_id) of these columns, compiled once per dialect, and
    the function putting a row's values (in the order of `names`) in the statement's order. The
    values are bound as given: only updated_at and flagged have bind processors here
    (`_case_value`), the others none, as checked."""
    key = (dialect.name, update_, names)
    found = _case_statements.get(key)
    if found is None:
        c = cases.c
        set_ = [n for n in names if n != "case_id"] if update_ else list(names)
        values = {n: bindparam(n, type_=c[n].type) for n in set_}
        stmt = (update(cases).where(c.case_id == bindparam("_key", type_=c.case_id.type)).values(values)
                if update_ else insert(cases).values(values))
        compiled = stmt.compile(dialect=dialect)
        order = tuple("case_id" if n == "_key" else n for n in compiled.positiontup or ())
        if sorted(order) != sorted(names) or any(
                _bind_processor(c[n].type, dialect) for n in names if n not in ("updated_at", "flagged")):
            raise ValueError(f"gateway_cases: cannot prepare a statement for {names}")
        found = _case_statements[key] = (str(compiled), itemgetter(*[names.index(n) for n in order]))
    return found


def _case_value(dialect: Dialect, column: str, value: Any) -> Any:
    """A value of a gateway_cases column as bound (its type's bind processor applied)."""
    process = _bind_processor(cases.c[column].type, dialect)
    return value if process is None else process(value)


# The periods a month's cells also count in (domain/indicators.py periods_of), in SQL: the month
# itself, its quarter and its year (a month not known counts only in itself).
_PERIODS = (
    "month",
    "CASE WHEN length(month) = 7 THEN substr(month, 1, 4) || 'Q' || "
    "CAST((CAST(substr(month, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1)) END",
    "CASE WHEN length(month) = 7 THEN substr(month, 1, 4) END",
)


async def add_to_indicators(conn: AsyncConnection, delta: ind.Delta) -> None:
    """Add a batch's changes to the indicator cells and to their rollups per period, summed in
    the database (a row's sums grow by the delta, so two consumers adding to one row never lose
    a change). PostgreSQL: one statement, the changed cells its arrays (`_summed_statement`).
    SQLite: the changed cells written once (`gateway_indicator_changes`), then one upsert per
    table from them, and the changes emptied again (`_statements`, compiled once: they take no
    parameters)."""
    rules = [dict(zip(ind.KEY, k, strict=True)) | {"rule": rule, "flagged": n}
             for (k, rule), n in delta.changed_rules().items()]
    await _add(conn, indicator_rules, rules, ("flagged",))
    changed = [(k, v) for k, v in delta.cells.items() if any(v.values())]
    if not changed:
        return
    if conn.dialect.name == "postgresql":
        arrays = await asyncio.to_thread(_cells_params, conn.dialect, changed) if len(changed) > 50 else (
            _cells_params(conn.dialect, changed))
        await conn.exec_driver_sql(_summed_statement(conn.dialect)[0], arrays)
        return
    insert_changes, *add, empty = _statements(conn.dialect)
    sql, zeros, index, processors = insert_changes

    def params() -> list[tuple[Any, ...]]:
        out = []
        for key, sums in changed:
            row = [*key, *zeros]  # the sums a cell's delta does not hold are 0
            for name, value in sums.items():
                if value:
                    i = index[name]
                    p = processors[i]
                    row[i] = value if p is None else p(value)
            out.append(tuple(row))
        return out

    await conn.exec_driver_sql(sql, await asyncio.to_thread(params) if len(changed) > 50 else params())
    for statement in add:
        await conn.exec_driver_sql(statement)
    await conn.exec_driver_sql(empty)


def _cells_params(dialect: Dialect, changed: Sequence[tuple[ind.Key, Mapping[str, Any]]]) -> tuple[Any, ...]:
    """PostgreSQL: `_summed_statement`'s parameters, the changed cells as one array per column: a
    list per text column, and per number column the text of its array ("{1,2.50,...}": the
    driver would check each number of a list on its way in, at ten times the cost)."""
    zero = dict.fromkeys(ind.SUMS, 0)  # "0" in an array's text, whatever its type
    columns = list(zip(*[(*k, *_all_sums({**zero, **sums})) for k, sums in changed], strict=True))
    return tuple(list(c) if text else "{" + ",".join(map(str, c)) + "}"
                 for c, text in zip(columns, _summed_statement(dialect)[1], strict=True))


_all_sums = itemgetter(*ind.SUMS)
_summed: dict[str, tuple[str, tuple[bool, ...]]] = {}


def _summed_statement(dialect: Dialect) -> tuple[str, tuple[bool, ...]]:
    """PostgreSQL: one statement adding a batch's changed cells (one array per column, `unnest`)
    to the cells and to every rollup: the rollups' rows summed from the cells per (period, key)
    in data-modifying CTEs, each table's upsert adding to the stored row's sums. Run once per
    batch, without a table of the changes to fill and empty. Gives its SQL and which of its
    parameters are text (a list; the others the text of an array)."""
    found = _summed.get(dialect.name)
    if found is None:
        quote = dialect.identifier_preparer.quote
        names = [*ind.KEY, *ind.SUMS]
        texts = tuple(isinstance(indicator_cells.c[c].type, String) for c in names)
        arrays = ", ".join(f"${i}::{'' if text else 'TEXT::'}{indicator_cells.c[c].type.compile(dialect=dialect)}[]"
                           for i, (c, text) in enumerate(zip(names, texts, strict=True), 1))
        sums = ", ".join(map(quote, ind.SUMS))

        def upsert(table: Table, rows: str) -> str:
            name = quote(table.name)
            key = list(table.primary_key.columns.keys())
            return (f"INSERT INTO {name} ({', '.join(map(quote, key))}, {sums}) {rows} "
                    f"ON CONFLICT ({', '.join(map(quote, key))}) DO UPDATE SET "
                    + ", ".join(f"{quote(n)} = {name}.{quote(n)} + EXCLUDED.{quote(n)}" for n in ind.SUMS))

        periods = ", ".join(f"({expr})" for expr in _PERIODS)
        added = []
        for name, columns in ind.ROLLUPS.items():
            cols = ", ".join(map(quote, columns))
            rows = (f"SELECT p.period, {cols}, {', '.join(f'sum({quote(n)})' for n in ind.SUMS)} FROM changes "
                    f"CROSS JOIN LATERAL (VALUES {periods}) AS p (period) WHERE p.period IS NOT NULL "
                    f"GROUP BY p.period, {cols}")
            added.append(f"{quote('add_' + name)} AS ({upsert(rollups[name], rows)})")
        sql = (f"WITH changes ({', '.join(map(quote, names))}) AS MATERIALIZED (SELECT * FROM unnest({arrays})), "
               + ", ".join(added) + " " + upsert(indicator_cells, "SELECT * FROM changes"))
        found = _summed[dialect.name] = (sql, texts)
    return found


_compiled: dict[str, tuple[Any, ...]] = {}


def _statements(dialect: Dialect) -> tuple[Any, ...]:
    """add_to_indicators' statements compiled for this dialect, once: the insert of the changes
    (its SQL, the sums' zero parameters, each sum's place in a row and each column's bind
    processor), the upserts of the cells and of each rollup from the changes (SQL without
    parameters) and their emptying."""
    found = _compiled.get(dialect.name)
    if found is not None:
        return found
    columns = (*ind.KEY, *ind.SUMS)
    compiled = insert(indicator_changes).values({c: bindparam(c, type_=indicator_changes.c[c].type)
                                                 for c in columns}).compile(dialect=dialect)
    if tuple(compiled.positiontup or ()) != columns:
        raise ValueError("gateway_indicator_changes: cannot prepare the insert")
    processors = tuple(_bind_processor(indicator_changes.c[c].type, dialect) for c in columns)
    zeros = tuple(0 if p is None else p(0) for p in processors[len(ind.KEY):])
    ch = indicator_changes.c
    sums = [ch[n] for n in ind.SUMS]
    upserts = [_upsert_from(dialect, indicator_cells, select(*[ch[n] for n in ind.KEY], *sums).where(true()))]
    for name, cols in ind.ROLLUPS.items():
        each = union_all(*[select(literal_column(expr).label("period"), *[ch[c] for c in cols], *sums)
                           .where(literal_column(expr).is_not(None)) for expr in _PERIODS]).subquery("each")
        keys = [each.c[n] for n in ("period", *cols)]
        # SQLite adds a query's rows to the table one after the other, so rows with one key need
        # not be summed first (sorting them cost more than adding them); PostgreSQL updates a
        # row once per statement
        upserts.append(_upsert_from(dialect, rollups[name], select(*each.c).where(true()) if dialect.name == "sqlite"
                                    else select(*keys, *[func.sum(each.c[n]).label(n) for n in ind.SUMS])
                                    .group_by(*keys)))
    statements: list[Any] = [(str(compiled), zeros, {n: i for i, n in enumerate(columns)}, processors)]
    for stmt in [*upserts, delete(indicator_changes)]:
        c = stmt.compile(dialect=dialect)
        if c.params:
            raise ValueError(f"{stmt}: a statement run as compiled takes no parameters")
        statements.append(str(c))
    found = _compiled[dialect.name] = tuple(statements)
    return found


def _bind_processor(type_: Any, dialect: Dialect) -> Any:
    """The column type's bind processor; on SQLite, where an ExactDecimal is stored as an integer
    count of its unit, a sum already whole in that unit (a sum of amounts in fen: nearly always)
    is counted without rounding it first (what rounding it would give)."""
    process = bind_processor(dialect, type_)
    if dialect.name != "sqlite" or not isinstance(type_, ExactDecimal) or process is None:
        return process
    scale = type_.scale

    def exact(value: Any) -> Any:
        if type(value) is Decimal:
            units = value.scaleb(scale)
            whole = int(units)
            if whole == units:
                return whole
        return process(value)
    return exact


def _upsert_from(dialect: Dialect, table: Table, rows: Any) -> Any:
    """An upsert of a query's rows (the key columns, then ind.SUMS): inserted, or their sums
    added to the stored row's."""
    stmt = _dialect_insert(dialect.name)(table).from_select([*table.primary_key.columns.keys(), *ind.SUMS], rows)
    return stmt.on_conflict_do_update(index_elements=[table.c[k] for k in table.primary_key.columns.keys()],
                                      set_={n: table.c[n] + stmt.excluded[n] for n in ind.SUMS})


async def _add(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], sums: Sequence[str]) -> None:
    """One upsert: the rows inserted, or their `sums` added to the stored row's (the statement
    built once per dialect and table)."""
    if rows:
        key = (conn.dialect.name, table.name, tuple(rows[0]), tuple(sums))
        stmt = _upserts.get(key)
        if stmt is None:
            insert_ = _dialect_insert(conn.dialect.name)(table)
            stmt = _upserts[key] = insert_.on_conflict_do_update(
                index_elements=[table.c[k] for k in table.primary_key.columns.keys()],
                set_={n: table.c[n] + insert_.excluded[n] for n in sums})
        await conn.execute(stmt, rows)


_upserts: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Any] = {}


async def add_to_case_counts(conn: AsyncConnection, changes: Iterable[tuple[str, str | None, str | None]]) -> None:
    """Keep the cases per (hospital, status): (hospital, status before or None, status after or
    None) per changed case, one upsert."""
    n: dict[tuple[str, str], int] = {}
    for hospital, before, after in changes:
        if before == after:
            continue
        if before is not None:
            n[(hospital, before)] = n.get((hospital, before), 0) - 1
        if after is not None:
            n[(hospital, after)] = n.get((hospital, after), 0) + 1
    await _add(conn, case_counts, [{"hospital_code": h, "status": st, "cases": k}
                                   for (h, st), k in sorted(n.items()) if k], ("cases",))


async def count_cases(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(cases)) or 0)


async def cases_after(conn: AsyncConnection, after: str, n: int) -> list[Row]:
    """The next `n` cases by id after `after` ("" first), with their views, facts and
    contributions (the rebuild reads the read model in this order)."""
    c = cases.c
    return list((await conn.execute(_with_results(c.case_id, c.list_version, c.status, c.indicator, c.facts)
                                    .where(c.case_id > after).order_by(c.case_id).limit(n))).all())


async def set_contributions(conn: AsyncConnection, contributions: Mapping[str, str | None]) -> None:
    """Store the cases' recomputed contributions (JSON)."""
    await update_many(conn, cases, "case_id", [{"case_id": cid, "indicator": c} for cid, c in contributions.items()])


async def replace_indicators(conn: AsyncConnection, delta: ind.Delta) -> None:
    """Every indicator cell and rollup replaced by the delta's (a rebuild's, over empty cells),
    and the cases per (hospital, status) counted again."""
    for table in (indicator_cells, indicator_rules, *rollups.values(), indicator_changes, case_counts):
        await conn.execute(delete(table))
    await add_to_indicators(conn, delta)
    c = cases.c
    await conn.execute(insert(case_counts).from_select(
        ["hospital_code", "status", "cases"],
        select(c.hospital_code, c.status, func.count()).group_by(c.hospital_code, c.status)))


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert


def _source(columns: Collection[str], months: Sequence[str], *, each_month: bool = False) -> tuple[Table, Any, Any]:
    """Where to read the sums of these key columns (besides the region) over these months: the
    smallest rollup holding them (its rows of the period, or with `each_month` its rows of each
    month), else the cells. Gives (the table, its month or period column, the period's condition)."""
    period = ind.period_of(months)
    if period is not None:
        for name, held in ind.ROLLUPS.items():  # smallest first
            if set(columns) <= set(held):
                t = rollups[name]
                return t, t.c.period, t.c.period.in_(months) if each_month else t.c.period == period
    c = indicator_cells.c
    return indicator_cells, c.month, c.month.in_(months)


def _filters(hospital: str | None, level: int | None) -> dict[str, Any]:
    return {n: v for n, v in (("hospital_code", hospital), ("hospital_level", level)) if v is not None}


def _where(t: Table, period: Any, region: str | None, filters: Mapping[str, Any]) -> list[Any]:
    return [period, *([t.c.region == region] if region is not None else []),
            *[t.c[n] == v for n, v in filters.items()]]


async def indicator_sums(conn: AsyncConnection, months: Sequence[str], region: str | None,
                         group_by: Sequence[str], *, hospital: str | None = None,
                         level: int | None = None) -> list[dict[str, Any]]:
    """The cells of these months summed per `group_by` columns (cells with no case left out),
    read from the smallest rollup that holds those columns."""
    filters = _filters(hospital, level)
    t, _, period = _source({*group_by, *filters} - {"region"}, months)
    cols = [t.c[n] for n in group_by]
    q = select(*cols, *[func.sum(t.c[n]).label(n) for n in ind.SUMS]).where(*_where(t, period, region, filters))
    q = q.group_by(*cols).having(func.sum(t.c.cases) > 0)
    return [dict(r._mapping) for r in (await conn.execute(q)).all()]


async def indicator_aggregates(conn: AsyncConnection, months: Sequence[str], region: str | None,
                               by: str | None, *, hospital: str | None = None,
                               level: int | None = None) -> list[ind.RowAggregate]:
    """The cells of these months summed per `by` column (None: one row) in the database, with
    each row's groups and its consumption indices' sums against the region's per-group means
    (`ind.RowAggregate`). Each part is read from the smallest rollup that holds its columns (the
    totals per row; the row's sums per group; the region's per group), so what is read is about
    what is answered, whatever the period: a year is its year's rows, not its months' cells."""
    filters = _filters(hospital, level)
    each_month = by == "month"
    wanted = {*filters, *([by] if by not in (None, "month", "region") else [])}

    def source(columns: set[str]) -> tuple[Table, Any, list[Any]]:
        t, period_col, period = _source(columns, months, each_month=each_month)
        key = (period_col if each_month else t.c[by]) if by else literal(None)
        return t, key, _where(t, period, region, filters)

    t, key, where = source(wanted)
    totals = select(key.label("key"), *[func.sum(t.c[n]).label(n) for n in ind.SUMS]).where(*where).group_by(
        *([key] if by else [])).having(func.sum(t.c.cases) > 0)
    # each row's sums against the region's per group over the whole period (its means: the
    # consumption indices' yardstick; neither the hospital nor the level applies to them). A
    # row's index sums are linear in its per-group sums (n_g × own mean_g / region mean_g =
    # cost_g × region n_g / region cost_g), so they are summed straight from the rollup's rows,
    # never grouped per group first; a row without a case has none of the sums (all 0).
    g, gkey, gwhere = source(wanted | {"scheme_id", "drg"})
    r, _, rperiod = _source({"scheme_id", "drg"}, months)
    reg = select(r.c.scheme_id, r.c.drg, func.sum(r.c.cases).label("n"), func.sum(r.c.cost_sum).label("cost"),
                 func.sum(r.c.los_cases).label("ln"), func.sum(r.c.los_sum).label("los")).where(
        *_where(r, rperiod, region, {}), r.c.drg != "").group_by(r.c.scheme_id, r.c.drg).having(
        func.sum(r.c.cases) > 0).subquery("reg")
    with_cost = and_(reg.c.n > 0, reg.c.cost != 0)
    with_los = and_(g.c.los_cases > 0, reg.c.ln > 0, reg.c.los != 0)
    real = Float()  # a ratio of sums: the database's floating point, not money (PostgreSQL's
    # numeric division per row would cost more than the rest of the query)

    def ratio_sum(when: Any, num: Any, n: Any, den: Any) -> Any:
        return type_coerce(func.sum(case((when, cast(num, real) * cast(n, real) / cast(den, real)))), real)

    # per row: the groups with a case, their schemes (the first and last: one, nearly always),
    # and the indices' sums
    in_group = [*gwhere, g.c.drg != "", g.c.cases > 0]
    indices = select(
        gkey.label("key"), func.count(distinct(g.c.scheme_id + "|" + g.c.drg)).label("groups"),
        func.min(g.c.scheme_id).label("first_scheme"), func.max(g.c.scheme_id).label("last_scheme"),
        ratio_sum(with_cost, g.c.cost_sum, reg.c.n, reg.c.cost).label("cost_num"),
        func.sum(case((with_cost, g.c.cases))).label("cost_cases"),
        ratio_sum(with_los, g.c.los_sum, reg.c.ln, reg.c.los).label("time_num"),
        func.sum(case((with_los, g.c.los_cases))).label("time_cases"),
    ).select_from(g.outerjoin(reg, and_(g.c.scheme_id == reg.c.scheme_id, g.c.drg == reg.c.drg))).where(
        *in_group).group_by(*([gkey] if by else []))
    rows = (await conn.execute(totals)).all()
    idx = {i.key: i for i in (await conn.execute(indices)).all()}
    schemes = {k: {i.first_scheme} for k, i in idx.items() if i.first_scheme == i.last_scheme}
    if len(schemes) < len(idx):  # rows under several schemes: which
        for k, scheme in (await conn.execute(select(gkey, g.c.scheme_id).where(*in_group).distinct())).all():
            if idx[k].first_scheme != idx[k].last_scheme:
                schemes.setdefault(k, set()).add(scheme)
    out = []
    for row in rows:
        m = row._mapping
        i = idx.get(row.key)
        out.append(ind.RowAggregate(
            row.key, {n: m[n] or 0 for n in ind.SUMS}, int(i.groups) if i is not None else 0,
            frozenset(schemes.get(row.key, ())),
            _decimal(i.cost_num) if i is not None else Decimal(0), int(i.cost_cases or 0) if i is not None else 0,
            _decimal(i.time_num) if i is not None else Decimal(0), int(i.time_cases or 0) if i is not None else 0))
    return out


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


async def indicator_rule_counts(conn: AsyncConnection, months: Sequence[str], region: str | None,
                                *, hospital: str | None = None, level: int | None = None) -> dict[str, int]:
    """Cases flagged per monitoring rule in these months."""
    r = indicator_rules.c
    q = select(r.rule, func.sum(r.flagged)).where(r.month.in_(months)).group_by(r.rule)
    if region is not None:
        q = q.where(r.region == region)
    if hospital is not None:
        q = q.where(r.hospital_code == hospital)
    if level is not None:
        q = q.where(r.hospital_level == level)
    return {rule: int(n) for rule, n in (await conn.execute(q)).all() if n}


# ---------------------------------------------------------------- the read model (queries)

def _with_results(*columns: Any) -> Any:
    """A select of these gateway_cases columns and of each stage's result (ORDER, as columns)."""
    r = case_results.c
    return select(*columns, *[select(r.result).where(r.case_id == cases.c.case_id, r.stage == s)
                              .scalar_subquery().label(s) for s in ORDER])


async def find_case(conn: AsyncConnection, case_id: str) -> Row | None:
    """A case's row with its stage results (columns named as the stages, None where none is held)."""
    return (await conn.execute(_with_results(cases).where(cases.c.case_id == case_id))).first()


async def case_timeline(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    """A case's events in the order they occurred."""
    rows = (await conn.execute(
        select(timeline).where(timeline.c.case_id == case_id).order_by(timeline.c.occurred_at))).all()
    return [{"event_type": e.event_type, "event_id": e.event_id, "list_version": e.list_version,
             "producer": e.producer, "occurred_at": e.occurred_at.isoformat()} for e in rows]


async def list_cases(conn: AsyncConnection, hospital_code: str | None, status: str | None,
                     limit: int, offset: int, flagged: bool | None = None,
                     group_code: str | None = None, after: str | None = None) -> list[dict[str, Any]]:
    """Cases by id; `after`: those after this id (the next page, read from where the last one
    ended rather than counted past)."""
    q = select(cases.c.case_id, cases.c.hospital_code, cases.c.status, cases.c.list_version, cases.c.flagged,
               cases.c.group_code)
    if hospital_code:
        q = q.where(cases.c.hospital_code == hospital_code)
    if group_code:
        q = q.where(cases.c.group_code == group_code)
    if status:
        q = q.where(cases.c.status == status)
    if flagged is not None:
        q = q.where(cases.c.flagged.is_(flagged))
    if after is not None:
        q = q.where(cases.c.case_id > after)
    rows = (await conn.execute(q.order_by(cases.c.case_id).limit(limit).offset(offset))).all()
    return [dict(r._mapping) for r in rows]


async def count_by_status(conn: AsyncConnection, hospital_code: str | None = None) -> dict[str, int]:
    """Cases per status, of one hospital or (None) of all: from the counts kept with the read model."""
    k = case_counts.c
    q = select(k.status, func.sum(k.cases)).group_by(k.status)
    if hospital_code is not None:
        q = q.where(k.hospital_code == hospital_code)
    return {r[0]: int(r[1]) for r in (await conn.execute(q)).all() if r[1]}


# ---------------------------------------------------------------- tokens

async def create_token(conn: AsyncConnection, role: str, hospital_code: str | None = None,
                       label: str | None = None, days: int | None = None) -> tuple[str, str]:
    """Issue a token valid for `days` days (0 or None: no expiry); returns (token_id, token).
    The token itself is never stored."""
    t = issue_token(role, hospital_code)
    now = datetime.now(UTC)
    await conn.execute(insert(tokens).values(
        token_id=t.token_id, token_hash=t.token_hash, role=t.role, hospital_code=t.hospital_code,
        label=label, created_at=now, expires_at=expiry(now, days)))
    return t.token_id, t.token


async def revoke_token(conn: AsyncConnection, token_id: str) -> bool:
    """Revoke an active token; False when there is none with this id."""
    result = await conn.execute(update(tokens).where(
        tokens.c.token_id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_tokens(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every token's id, role, hospital, label and dates (never the token or its hash)."""
    rows = (await conn.execute(select(
        tokens.c.token_id, tokens.c.role, tokens.c.hospital_code, tokens.c.label,
        tokens.c.created_at, tokens.c.revoked_at, tokens.c.expires_at).order_by(tokens.c.created_at))).all()
    return [dict(r._mapping) | {k: _aware(r._mapping[k]) if r._mapping[k] else None
                                for k in ("created_at", "revoked_at", "expires_at")} for r in rows]


async def token_holder(conn: AsyncConnection, token_hash: str) -> tuple[Principal | None, str]:
    """Who holds the token with this hash, and "active"; else (None, why): "unknown", "revoked"
    or "expired"."""
    row = (await conn.execute(select(tokens).where(tokens.c.token_hash == token_hash))).first()
    if row is None:
        return None, "unknown"
    if row.revoked_at is not None:
        return None, "revoked"
    if row.expires_at is not None and _aware(row.expires_at) <= datetime.now(UTC):
        return None, "expired"
    return Principal(row.token_id, row.role, row.hospital_code), "active"


async def token_role(conn: AsyncConnection, token_id: str) -> str | None:
    """The role of an active (not revoked, not expired) token by its id; None when there is none."""
    row = (await conn.execute(select(tokens).where(tokens.c.token_id == token_id))).first()
    if row is None or row.revoked_at is not None or (
            row.expires_at is not None and _aware(row.expires_at) <= datetime.now(UTC)):
        return None
    return str(row.role)


# ---------------------------------------------------------------- dashboard sessions

async def open_token_session(conn: AsyncConnection, token_hash: str, hours: int,
                             ) -> tuple[Principal | None, NewSession | None, str]:
    """A new session for the holder of the token with this hash (the token's own checks: unknown,
    revoked, expired); expired sessions are purged on the way."""
    who, why = await token_holder(conn, token_hash)
    if who is None:
        return None, None, why
    now = datetime.now(UTC)
    await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
    expires = (await conn.execute(select(tokens.c.expires_at).where(tokens.c.token_id == who.token_id))).scalar()
    new = open_session(now, hours, _aware(expires) if expires else None)
    await conn.execute(insert(sessions).values(session_hash=new.session_hash, token_id=who.token_id,
                                               created_at=now, expires_at=new.expires_at))
    return who, new, "active"


async def session_holder(conn: AsyncConnection, session_hash: str) -> tuple[Principal | None, str]:
    """Who a session acts for, and "active"; else (None, why): "unknown", "expired", or the
    token's own "revoked"/"expired"."""
    row = (await conn.execute(select(sessions.c.expires_at, tokens.c.token_hash).join(
        tokens, tokens.c.token_id == sessions.c.token_id).where(sessions.c.session_hash == session_hash))).first()
    if row is None:
        return None, "unknown"
    if _aware(row.expires_at) <= datetime.now(UTC):
        return None, "expired"
    return await token_holder(conn, row.token_hash)


async def close_session(conn: AsyncConnection, session_hash: str) -> bool:
    """End a session (sign-out); False when there was none."""
    result = await conn.execute(delete(sessions).where(sessions.c.session_hash == session_hash))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# ---------------------------------------------------------------- the audit (append-only)

async def record(conn: AsyncConnection, action: str, *, actor: str, role: str | None = None,
                 token_id: str | None = None, subject: str | None = None, detail: str | None = None,
                 client: str | None = None) -> None:
    """Append one audit row (never updated or deleted)."""
    await conn.execute(insert(audit).values(
        at=datetime.now(UTC), action=action, actor=actor[:128], role=role, token_id=token_id,
        subject=subject[:128] if subject else subject, detail=detail, client=client[:64] if client else client))


async def audit_rows(conn: AsyncConnection, *, action: str | None = None, actor: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Audit rows, oldest first, filtered by action, actor and time (`since` inclusive, `until`
    exclusive)."""
    q = select(audit)
    if action:
        q = q.where(audit.c.action == action)
    if actor:
        q = q.where(audit.c.actor == actor)
    if since:
        q = q.where(audit.c.at >= since)
    if until:
        q = q.where(audit.c.at < until)
    q = q.order_by(audit.c.at, audit.c.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) | {"at": _aware(r.at)} for r in (await conn.execute(q)).all()]


# ---------------------------------------------------------------- reports and evaluations

async def save_report(conn: AsyncConnection, kind: str, scope: str, period: str, document: str,
                      issued_by: str) -> int:
    """Store a report as issued, as the next version of (kind, scope, period); its version."""
    r = reports.c
    last = await conn.scalar(select(func.max(r.version)).where(r.kind == kind, r.scope == scope, r.period == period))
    version = int(last or 0) + 1
    await conn.execute(insert(reports).values(kind=kind, scope=scope, period=period, version=version,
                                              issued_at=datetime.now(UTC), issued_by=issued_by[:128],
                                              document=document))
    return version


async def stored_reports(conn: AsyncConnection, kind: str, scope: str | None, period: str | None,
                         version: int | None = None) -> list[dict[str, Any]]:
    """Stored reports (newest version last), without their documents unless `version` is given."""
    r = reports.c
    q = select(reports).where(r.kind == kind)
    if scope is not None:
        q = q.where(r.scope == scope)
    if period is not None:
        q = q.where(r.period == period)
    if version is not None:
        q = q.where(r.version == version)
    rows = (await conn.execute(q.order_by(r.period, r.scope, r.version))).all()
    return [dict(row._mapping) | {"issued_at": _aware(row.issued_at)} for row in rows]


async def evaluation_parameters_for(conn: AsyncConnection, region: str, year: str) -> tuple[int, str | None]:
    """The latest parameter version in force for a region's year: (version, document); (0, None)
    when none is stored (the defaults)."""
    p = evaluation_parameters.c
    row = (await conn.execute(select(p.version, p.document).where(p.region == region, p.valid_from <= year)
                              .order_by(p.valid_from.desc(), p.version.desc()).limit(1))).first()
    return (0, None) if row is None else (int(row.version), str(row.document))


async def save_evaluation_parameters(conn: AsyncConnection, region: str, valid_from: str, document: str,
                                     who: str) -> int:
    p = evaluation_parameters.c
    version = int(await conn.scalar(select(func.max(p.version)).where(p.region == region)) or 0) + 1
    await conn.execute(insert(evaluation_parameters).values(
        region=region, version=version, valid_from=valid_from, document=document,
        created_at=datetime.now(UTC), created_by=who[:128]))
    return version


async def save_evaluation(conn: AsyncConnection, region: str, period: str, parameters_version: int,
                          document: str, who: str) -> int:
    result = await conn.execute(insert(evaluations).values(
        region=region, period=period, parameters_version=parameters_version, evaluated_at=datetime.now(UTC),
        evaluated_by=who[:128], document=document))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def list_evaluations(conn: AsyncConnection, region: str | None, period: str | None,
                           evaluation_id: int | None = None) -> list[dict[str, Any]]:
    e = evaluations.c
    q = select(evaluations)
    if region is not None:
        q = q.where(e.region == region)
    if period is not None:
        q = q.where(e.period == period)
    if evaluation_id is not None:
        q = q.where(e.id == evaluation_id)
    rows = (await conn.execute(q.order_by(e.id))).all()
    return [dict(row._mapping) | {k: _aware(row._mapping[k]) if row._mapping[k] else None
                                  for k in ("evaluated_at", "adopted_at")} for row in rows]


async def adopt_evaluation(conn: AsyncConnection, evaluation_id: int, who: str) -> None:
    await conn.execute(update(evaluations).where(evaluations.c.id == evaluation_id).values(
        adopted_at=datetime.now(UTC), adopted_by=who[:128]))
