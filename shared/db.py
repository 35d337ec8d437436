"""Database plumbing: async SQLAlchemy 2 on PostgreSQL (asyncpg) or SQLite (aiosqlite).

Each service owns its tables (named `<service>_…`) and its Alembic history; in the embedded
mode all of them live in one SQLite file, in the distributed mode each service may have its
own database. Stages use SQLAlchemy Core: one transaction per consumed message or request.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Numeric,
    Select,
    Table,
    and_,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import base as sqlite_types
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.sqltypes import _Binary
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from shared.periods import InForce

# --- SQLite through aiosqlite: one thread round trip per statement ------------------------------
# aiosqlite runs each call on its connection's worker thread: a queue put, the worker's wake-up,
# and the result back through the event loop's self-pipe. SQLAlchemy's adapter makes four such
# calls per statement (open a cursor, execute, fetch the rows, close the cursor); the cursor
# below makes one, which does all four on the worker thread. Rows are fetched whole, as the
# adapter's default cursor does; server-side (streamed) cursors stay the adapter's own.

def _run_statement(conn: Any, many: bool, operation: str, parameters: Any
                   ) -> tuple[Any, list[Any], int, int | None]:
    """On the connection's worker thread: execute, fetch every row, close; what the caller reads."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _OneCallCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_rowcount", "_lastrowid")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:  # no round trip: nothing opened yet
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount, self._lastrowid = -1, None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        return None

    async def _run(self, many: bool, operation: Any, parameters: Any) -> None:
        aio = self._connection
        async with self._adapt_connection._execute_mutex:
            self._description, rows, self._rowcount, self._lastrowid = await aio._execute(
                _run_statement, aio._conn, many, operation, parameters)
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(False, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._run(True, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)


class _OneCallConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneCallCursor


def create_engine(url: str) -> AsyncEngine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer at a time anyway, and queueing for the pool is
        # far quicker than SQLite's busy-wait back-off when several connections contend.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=120)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            if type(dbapi_conn) is AsyncAdapt_aiosqlite_connection:
                dbapi_conn.__class__ = _OneCallConnection  # a statement: one thread round trip
            # WAL lets readers (the API) run while a stage writes; NORMAL sync is durable in WAL.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            # a stage touches many tables per batch: keep their pages in memory (256 MiB)
            cur.execute("PRAGMA cache_size=-262144")
            # Checkpoint the WAL every 16,000 pages (64 MiB), not every 1,000: a checkpoint copies
            # each page the WAL holds into the database file, and the pages every batch rewrites
            # (outbox and inbox tails, rollups, the person index's leaves) are copied once per
            # checkpoint however often they were written; in a file of gigabytes those copies land
            # far apart. Fewer checkpoints: fewer copies of the same page, less CPU per case.
            cur.execute("PRAGMA wal_autocheckpoint=16000")
            cur.close()
            # transactions are begun explicitly below, as BEGIN IMMEDIATE
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Take the write lock up front: a read transaction that later writes would fail with
            # "database is locked" if another writer committed in between (busy_timeout can't help).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


# What a database that is not answering raises (restart, network, timeout): such work waits and
# is tried again, never dead-lettered or rejected. `is_transient` is the one test; these classes
# are a part of it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, ConnectionError, OSError, TimeoutError)

# PostgreSQL's SQLSTATEs of a server that is away or busy, or of a transaction that merely lost a
# race; asyncpg raises them as plain `PostgresError`s, which SQLAlchemy wraps as `DBAPIError`.
TRANSIENT_SQLSTATES = frozenset({
    "57P01",  # admin_shutdown: "terminating connection due to administrator command"
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: "the database system is starting up / shutting down"
    "53300",  # too_many_connections
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
})
TRANSIENT_SQLSTATE_CLASSES = ("08",)  # connection exceptions
_TRANSIENT_MESSAGES = (
    "database is locked",  # SQLite: another writer held the lock past busy_timeout
    "the database system is",  # ... shutting down / starting up / in recovery / not yet accepting
    "connection is closed",
    "connection was closed",
    "terminating connection",
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc` says the database is away or busy (connection lost, server shutting down
    or starting up, too many connections, a serialization failure or deadlock, SQLite's lock):
    the same work succeeds later. False for a failure caused by the work itself (a constraint,
    bad data, a bug), which retrying would only repeat."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and state:
            if state in TRANSIENT_SQLSTATES or state.startswith(TRANSIENT_SQLSTATE_CLASSES):
                return True
            if not isinstance(e, sa_exc.StatementError):
                return False  # the server named the error: a state not above is by content
        if isinstance(e, TRANSIENT_ERRORS):
            return True
        if isinstance(e, sa_exc.IntegrityError | sa_exc.ProgrammingError | sa_exc.DataError):
            return False
        message = str(e).lower()
        if any(m in message for m in _TRANSIENT_MESSAGES):
            return True
        todo += [getattr(e, "orig", None), e.__cause__]
    return False


class Backoff:
    """Capped exponential back-off between tries of work that failed for a transient reason:
    `first_ms`, doubling up to `max_ms`; `reset()` once the work succeeds."""

    def __init__(self, first_ms: int = 200, max_ms: int = 10_000) -> None:
        self.first, self.cap = first_ms / 1000, max(max_ms, first_ms) / 1000
        self.tries = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * (2 ** min(self.tries, 30)))
        self.tries += 1
        return delay

    async def wait(self) -> None:
        import asyncio

        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.tries = 0


# A table's own row id: BIGINT on PostgreSQL; INTEGER on SQLite, which autoincrements only that.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class ExactDecimal(TypeDecorator[Decimal]):
    """A `Decimal` with `scale` places, stored exactly: NUMERIC on PostgreSQL, and on SQLite (whose
    NUMERIC is a float on disk) an integer count of 10^-scale (fen for money). Values are rounded
    half up to `scale` places on the way in, as NUMERIC does."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale)
        self.precision, self.scale = precision, scale
        self._unit = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return int(Decimal(value).quantize(self._unit, rounding=ROUND_HALF_UP).scaleb(self.scale))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value)


def money() -> ExactDecimal:
    """The column type of an amount in yuan (to the fen): up to 10^12 yuan."""
    return ExactDecimal(16, 2)


def latest_per_case(table: Table, version: str, *, key: str | Sequence[str] = "case_id",
                    where: ColumnElement[bool] | None = None) -> Select[Any]:
    """SELECT the rows of `table` with the highest `version` for each `key` (the newest list
    version, grouping version or stored row of every case; `key` may be several columns, e.g.
    the newest grouping of each list version); `where` narrows the cases first."""
    keys = [table.c[k] for k in ((key,) if isinstance(key, str) else key)]
    v = table.c[version]
    newest = select(*(k.label(f"k{i}") for i, k in enumerate(keys)), func.max(v).label("v")).group_by(*keys)
    if where is not None:
        newest = newest.where(where)
    sub = newest.subquery()
    return select(table).join(sub, and_(v == sub.c.v, *(k == sub.c[f"k{i}"] for i, k in enumerate(keys))))


class Probe:
    """How /readyz sees the database: each probe opens a connection of its own (no pool), so it
    never queues behind the stages' pooled connections (on SQLite: one, held through a large
    import) and an outage is still seen. A SQLite file is opened read-only: a missing file is an
    outage, not a new empty database."""

    def __init__(self, engine: AsyncEngine, timeout: float = 2.0) -> None:
        self.timeout = timeout
        u = engine.url
        self._engine: AsyncEngine | None = None
        self._fallback = engine
        self._sql = "SELECT 1"
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                path = Path(u.database).resolve().as_posix()
                self._engine = create_async_engine(
                    u.set(database=f"file:{path}?mode=ro", query={"uri": "true"}),
                    poolclass=NullPool, connect_args={"timeout": timeout})
                self._sql = "SELECT count(*) FROM sqlite_master"  # reads the file itself
        else:
            self._engine = create_async_engine(u, poolclass=NullPool, connect_args={"timeout": timeout})

    async def ping(self) -> bool:
        """True when a trivial query succeeds within the timeout."""
        async def _probe(conn: AsyncConnection) -> None:
            await conn.execute(text(self._sql))

        try:
            await self.read(_probe)
            return True
        except Exception:
            return False

    async def read(self, reads: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`reads` on a connection of the probe's own, within the timeout (else TimeoutError)."""
        import asyncio

        engine = self._engine or self._fallback  # an in-memory database: only its own pool

        async with asyncio.timeout(self.timeout), engine.connect() as conn:
            return await reads(conn)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


# --- bulk writes --------------------------------------------------------------------------------
# A stage writes each of its tables once per batch of events. SQLAlchemy builds a parameter
# dictionary per row before it binds it, which at hundreds of rows per batch was the largest
# single cost of a stage; these two helpers compile the statement once per table and column
# set, pass each value through its column type's bind processor (as SQLAlchemy would) and hand
# the rows to the driver's executemany.

_Prepared = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]
_prepared: dict[tuple[str, str, str, tuple[str, ...], str | None, bool], _Prepared] = {}
_KEY = "_key"
_unnest: set[str] = set()  # the statements that take one array per column


def bind_processor(dialect: Dialect, type_: TypeEngine[Any]) -> Callable[[Any], Any] | None:
    """What a value of `type_` is turned into for the driver, as SQLAlchemy binds it (None: as
    it is). On SQLite three common ones are done the quick way, to the same value: bytes go to
    sqlite3 as they are (SQLAlchemy wraps them in a memoryview, which sqlite3 stores alike), and
    a datetime or date becomes its ISO text directly instead of through a format string and a
    dictionary of its fields (the text SQLAlchemy's default storage format writes; any other
    value still goes through SQLAlchemy's own conversion)."""
    impl = type_.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if dialect.name != "sqlite" or process is None:
        return process
    if isinstance(impl, _Binary):
        return lambda v: v if type(v) is bytes else process(v)
    if isinstance(type_, ExactDecimal):
        # a Decimal straight to its count of 10^-scale, as process_bind_param computes it
        # (without the copy of the value and the type's wrapper: about half the cost)
        unit, scale = type_._unit, type_.scale
        return lambda v: int(v.quantize(unit, ROUND_HALF_UP).scaleb(scale)) if type(v) is Decimal else process(v)
    if type(impl) is sqlite_types.DATETIME and impl._storage_format == sqlite_types.DATETIME._storage_format:
        # "YYYY-MM-DD HH:MM:SS.ffffff", the time zone left out as SQLAlchemy leaves it out
        return lambda v: v.isoformat(" ", "microseconds")[:26] if type(v) is datetime else process(v)
    if type(impl) is sqlite_types.DATE and impl._storage_format == sqlite_types.DATE._storage_format:
        return lambda v: v.isoformat() if type(v) is date else process(v)
    return process


def _unnest_statement(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str | None) -> str:
    """PostgreSQL: the INSERT (or, with `key`, the UPDATE) of a batch given as one array per
    column (`unnest`; the key's array last), run once. The driver's executemany runs the
    statement once per row, and each run is an executor start, a snapshot and an executor end
    in the server: that, not the row, was most of what a row cost PostgreSQL."""
    quote = dialect.identifier_preparer.quote
    name = dialect.identifier_preparer.format_table(table)
    names = (*columns, key) if key else columns
    arrays = ", ".join(f"${i}::{table.c[c].type.compile(dialect=dialect)}[]" for i, c in enumerate(names, 1))
    if key is None:
        return f"INSERT INTO {name} ({', '.join(map(quote, columns))}) SELECT * FROM unnest({arrays})"
    return (f"UPDATE {name} SET {', '.join(f'{quote(c)} = batch.c{i}' for i, c in enumerate(columns))} "
            f"FROM unnest({arrays}) AS batch({', '.join(f'c{i}' for i in range(len(columns)))}, k) "
            f"WHERE {name}.{quote(key)} = batch.k")


def _prepare(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str | None,
             columnwise: bool = True) -> _Prepared:
    """The statement of a bulk write and how its parameters are bound. On PostgreSQL (unless
    not `columnwise`) one array per column, else one row of parameters per row."""
    columnwise = columnwise and dialect.name == "postgresql"
    cache_key = (dialect.name, table.name, "update" if key else "insert", columns, key, columnwise)
    found = _prepared.get(cache_key)
    if found is None and columnwise:
        sql = _unnest_statement(dialect, table, columns, key)
        _unnest.add(sql)
        order, names = ((*columns, _KEY), (*columns, key)) if key else (columns, columns)
        found = _prepared[cache_key] = (sql, order, tuple(bind_processor(dialect, table.c[c].type) for c in names))
    if found is None:
        values = {c: bindparam(c, type_=table.c[c].type) for c in columns}
        stmt = (insert(table).values(values) if key is None else
                update(table).where(table.c[key] == bindparam(_KEY, type_=table.c[key].type)).values(values))
        compiled = stmt.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ())
        if len(order) != len(columns) + (key is not None):
            raise ValueError(f"{table.name}: cannot prepare a bulk statement for {columns}")
        types = {c: table.c[c].type for c in columns} | ({_KEY: table.c[key].type} if key else {})
        found = _prepared[cache_key] = (str(compiled), order, tuple(
            bind_processor(dialect, types[name]) for name in order))
    return found


def _converted(rows: Iterable[Sequence[Any]], processors: Sequence[Callable[[Any], Any] | None]
               ) -> list[tuple[Any, ...]]:
    """Each row (its values in the statement's order) as the driver receives it."""
    convert = tuple((i, p) for i, p in enumerate(processors) if p is not None)
    if not convert:
        return [tuple(row) for row in rows]
    out: list[tuple[Any, ...]] = []
    # a batch's rows often share a value (the batch's timestamp): converted once
    last: list[tuple[Any, Any]] = [(None, None)] * len(processors)
    for row in rows:
        values = list(row)
        for i, process in convert:
            v = values[i]
            if v is not None:
                seen, done = last[i]
                if v is not seen:
                    done = process(v)
                    last[i] = (v, done)
                values[i] = done
        out.append(tuple(values))
    return out


async def _execute_many(conn: AsyncConnection, prepared: _Prepared, rows: Sequence[Mapping[str, Any]],
                        key: str = _KEY) -> None:
    sql, order, processors = prepared
    names = tuple(key if n == _KEY else n for n in order)
    get = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)

    def params() -> list[tuple[Any, ...]]:
        return _converted(map(get, rows), processors)

    # a stage's batch is hundreds of rows: converting them is CPU work, off the event loop
    converted = await asyncio.to_thread(params) if len(rows) > 50 else params()
    await conn.exec_driver_sql(sql, _columnwise(sql, converted))


def _columnwise(sql: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]] | tuple[list[Any], ...]:
    """The parameters of `sql` for `rows`: as they are (executemany), or for an `unnest`
    statement one array per column (one execution)."""
    if sql not in _unnest:
        return rows
    return tuple(list(column) for column in zip(*rows, strict=True))


async def insert_many(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys) into `table` with one driver call."""
    if rows:
        await _execute_many(conn, _prepare(conn.dialect, table, tuple(rows[0]), None), rows)


def insert_statement(dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Iterable[Sequence[Any]]
                     ) -> tuple[str, list[tuple[Any, ...]] | tuple[list[Any], ...]]:
    """The INSERT of `rows` (each the values of `columns`, in that order) into `table` and its
    parameters as the driver takes them, for one `exec_driver_sql`: as `insert_many` does it,
    without a dictionary per row. CPU work only, so a large batch can be prepared in a worker
    thread; `rows` may be a generator."""
    sql, order, processors = _prepare(dialect, table, columns, None)
    if order != columns:  # the statement binds them in another order
        pick = itemgetter(*(columns.index(n) for n in order))
        rows = (pick(row) for row in rows)
    return sql, _columnwise(sql, _converted(rows, processors))


async def update_many(conn: AsyncConnection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """UPDATE `table` SET the other keys of each row WHERE `key` = the row's `key` (one driver call)."""
    if rows:
        columns = tuple(c for c in rows[0] if c != key)
        # one array per column updates each row once: a key twice in the batch is done row by
        # row, so that the last of its rows wins as it would one after the other
        unique = conn.dialect.name == "postgresql" and len({row[key] for row in rows}) == len(rows)
        await _execute_many(conn, _prepare(conn.dialect, table, columns, key, unique), rows, key)



_upserts: dict[tuple[Any, ...], _Prepared] = {}


def _upsert_sql(dialect: Dialect, table: Table, key: tuple[str, ...], columns: tuple[str, ...],
                add: tuple[str, ...], columnwise: bool) -> tuple[str, tuple[str, ...]]:
    """The INSERT ... ON CONFLICT (`key`'s columns) DO UPDATE of `columns` and the order it binds
    them in.
    PostgreSQL (`columnwise`): the rows as one array per column (`unnest`), run once; else the
    statement SQLAlchemy compiles for one row, which the driver's executemany runs per row."""
    quote = dialect.identifier_preparer.quote
    if columnwise:
        name = dialect.identifier_preparer.format_table(table)
        arrays = ", ".join(f"${i}::{table.c[c].type.compile(dialect=dialect)}[]" for i, c in enumerate(columns, 1))
        sets = ", ".join(f"{quote(c)} = {name}.{quote(c)} + excluded.{quote(c)}" if c in add
                         else f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in key)
        return (f"INSERT INTO {name} ({', '.join(map(quote, columns))}) SELECT * FROM unnest({arrays}) "
                f"ON CONFLICT ({', '.join(map(quote, key))}) DO {f'UPDATE SET {sets}' if sets else 'NOTHING'}"), columns
    make = pg_insert if dialect.name == "postgresql" else sqlite_insert
    stmt = make(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns})
    sets_ = {c: table.c[c] + stmt.excluded[c] if c in add else stmt.excluded[c] for c in columns if c not in key}
    stmt = (stmt.on_conflict_do_update(index_elements=list(key), set_=sets_) if sets_ else
            stmt.on_conflict_do_nothing(index_elements=list(key)))
    compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ())
    if sorted(order) != sorted(columns):
        raise ValueError(f"{table.name}: cannot prepare a bulk upsert for {columns}")
    return str(compiled), order


def upsert_statement(dialect: Dialect, table: Table, key: str | tuple[str, ...], columns: tuple[str, ...],
                     rows: Iterable[Sequence[Any]], add: Collection[str] = ()
                     ) -> tuple[str, list[tuple[Any, ...]] | tuple[list[Any], ...]]:
    """The INSERT of `rows` (each the values of `columns`, in that order, `key` among them) into
    `table` where the row of their `key` (a column, or the columns of a composite key) is
    missing, else the UPDATE of its other `columns` to theirs (those in `add`: their value added
    to the stored one), and its parameters, for one
    `exec_driver_sql`. On PostgreSQL one statement over one array per column (`unnest`), run
    once; a batch that names a key twice goes row by row there, so that rows of one key apply
    one after the other as anywhere else (the last values win; `add` sums)."""
    rows = list(rows)
    keys = (key,) if isinstance(key, str) else key
    at = itemgetter(*(columns.index(k) for k in keys))
    columnwise = dialect.name == "postgresql" and len({at(row) for row in rows}) == len(rows)
    added = tuple(c for c in columns if c in add)
    cache_key = (dialect.name, table.name, "upsert", columns, keys, columnwise, added)
    found = _upserts.get(cache_key)
    if found is None:
        sql, order = _upsert_sql(dialect, table, keys, columns, added, columnwise)
        if columnwise:
            _unnest.add(sql)
        found = _upserts[cache_key] = (sql, order, tuple(bind_processor(dialect, table.c[c].type) for c in order))
    sql, order, processors = found
    if order != columns:  # the statement binds them in another order
        pick = itemgetter(*(columns.index(n) for n in order))
        rows = [pick(row) for row in rows]
    return sql, _columnwise(sql, _converted(rows, processors))


async def upsert_many(conn: AsyncConnection, table: Table, key: str | tuple[str, ...], rows: Sequence[Mapping[str, Any]],
                      add: Collection[str] = ()) -> None:
    """`upsert_statement` of `rows` (dicts with the same keys, `key` among them): one driver call."""
    if rows:
        columns = tuple(rows[0])
        get = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)

        def statement() -> tuple[str, Any]:
            return upsert_statement(conn.dialect, table, key, columns, map(get, rows), add)

        # a stage's batch is hundreds of rows: converting them is CPU work, off the event loop
        await conn.exec_driver_sql(*(await asyncio.to_thread(statement) if len(rows) > 50 else statement()))


# --- versioned documents valid per region and period ---------------------------------------------

T = TypeVar("T")


class Versions(Generic[T]):
    """The stored versions of documents valid per region and period (one table), each parsed
    once: a stored version never changes, so its parsed form is kept for the process."""

    def __init__(self, table: Table, id_column: str, parse: Callable[[Any], T]) -> None:
        """`table` has `version`, `region`, `valid_from`, `valid_to` and the `id_column`;
        `parse` makes the document from a whole row."""
        self.table, self.id, self.parse = table, table.c[id_column], parse
        self._parsed: dict[tuple[str, int], T] = {}

    async def get(self, conn: AsyncConnection, doc_id: str, version: int) -> T:
        key = (doc_id, version)
        if key not in self._parsed:
            row = (await conn.execute(select(self.table).where(
                self.id == doc_id, self.table.c.version == version).limit(1))).first()
            if row is None:
                raise KeyError(key)
            self._parsed[key] = self.parse(row)
        return self._parsed[key]

    async def in_force(self, conn: AsyncConnection) -> InForce[T]:
        """Every stored version by region and period (one small query, e.g. per batch of cases)."""
        c = self.table.c
        rows = (await conn.execute(select(self.id, c.version, c.region, c.valid_from, c.valid_to))).all()
        return InForce([(r.region, r.valid_from, r.valid_to, r.version, await self.get(conn, r[0], r.version))
                        for r in rows])

    async def latest(self, conn: AsyncConnection, doc_id: str) -> T | None:
        version = await conn.scalar(select(func.max(self.table.c.version)).where(self.id == doc_id))
        return None if version is None else await self.get(conn, doc_id, version)
