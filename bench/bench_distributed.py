"""The distributed pipeline under load and faults: five service processes, Kafka, PostgreSQL.

    .venv/bin/python bench/bench_distributed.py [--cases 10000] [--kafka HOST:PORT] [--pg URL]
    .venv/bin/python bench/bench_distributed.py --latency [--rates 20,50,100] [--duration 20]
    .venv/bin/python bench/bench_distributed.py --fault services,broker,pg --cases 5000 --rate 40
    .venv/bin/python bench/bench_distributed.py --drain grouper --replicas grouper=2 --cases 10000

Without --kafka/--pg it starts a PostgreSQL cluster and a single-node Kafka broker of its own
(bench/servers.py: free ports, a temporary folder; the broker from the jars `make test` caches)
and stops them on exit or Ctrl-C. Each service runs as `drgdip serve <service>` with its own
database, one topic namespace per run. The region is generated and calibrated as in
bench_pipeline.py and its point policies are imported through the gateway, so every case is
priced for real.

Modes:
- throughput (default): one bulk import of --cases lists through the gateway
  (`POST /api/v1/settlement-lists:import`, bureau token), sampled every second until the pipeline
  is idle: each stage's consumer-group lag (log end offsets − committed offsets), the outboxes
  and ingest's undecided lists, each stage's row count, CPU seconds (/proc/<pid>/stat utime +
  stime, PostgreSQL's backends included, less those answering the benchmark's own reads, which
  are printed apart) and resident memory of every process; --pg-statements N adds PostgreSQL's
  N costliest statements per database, the HOT updates per table and the temporary files. Prints cases/s
  end to end and per stage, lag over time, CPU per process and per case, peak and final RSS.
- --latency: single lists through the gateway (`POST /api/v1/settlement-lists`, each with its
  hospital's token), open loop at each of --rates req/s for --duration s: p50/p95/p99 from the
  moment each request was due (a slow answer delays no later request).
- --fault KINDS: a paced import (--rate lists/s, chunks of imports that the client sends again
  when one fails) with faults in turn: `services` (kill -9 of ingest, grouper, pricer, review,
  gateway, each restarted after --down s), `broker` (clean stop, start after --down s), `pg`
  (`pg_ctl stop -m immediate`, start after --down s), or single names. Each fault's recovery
  time is from the fault until the component is back and the backlog (lags + outboxes +
  undecided lists) is back to its level before the fault. At the end every accepted case is
  counted in each stage: lost, duplicated, dead letters.

- --replicas STAGE=N[,…]: N processes of a stage (one consumer group; the gateway's peers take
  part in the read model, imports go to the first).
- --drain STAGE (grouper, pricer, review): the stage's own rate, without its input's rate in the
  way. In two rounds, each on half the lists: the stage's processes are stopped, the half is
  imported and everything upstream finishes (its input waits in the topic), the stages after it
  are stopped; the stage's inbox is locked while 1 (first round) and N (second round, from
  --replicas) processes start and their consumer group settles, then released: cases/s from the
  release until its lag and outbox are 0, and the speed-up of N processes over 1, with the CPU
  each process (and PostgreSQL and Kafka) spent per case meanwhile.

Every mode ends with the same count (every accepted list reviewed exactly once). --samples FILE
writes every per-second sample as JSON Lines. Throughput and drain runs keep their figures in
bench/results/distributed.json (one entry per mode and stage). Figures in README.md,
"Distributed benchmarks".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO), str(REPO / "bench")) if p not in sys.path]

import httpx  # noqa: E402
import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from servers import (  # noqa: E402
    CLOCK_TICKS,
    Kafka,
    Postgres,
    Service,
    _children,
    _stat,
    cpu_seconds,
    memory,
    schedstat,
    tree_rss,
)
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine  # noqa: E402

from drgdip.demo import YEARS, region_policies, resolve_scheme, write_region  # noqa: E402
from drgdip.generate import RegionGenerator  # noqa: E402
from services.grouper.domain import load_scheme  # noqa: E402
from shared.events import CASE_GROUPED, CASE_PRICED, CASE_RECEIVED, SPECIAL_CASE_DECIDED, TOPICS  # noqa: E402

STAGES = ("ingest", "grouper", "pricer", "review", "gateway")
# what each stage consumes (services/<name>/app.py); the consumer group is namespace + stage
CONSUMES = {"grouper": (CASE_RECEIVED,), "pricer": (CASE_GROUPED, SPECIAL_CASE_DECIDED),
            "review": (CASE_PRICED,), "gateway": TOPICS}
COUNT_SQL = {
    "ingest": "SELECT COUNT(*) FROM ingest_lists",
    "grouper": "SELECT COUNT(*) FROM grouper_results",
    "pricer": "SELECT COUNT(*) FROM pricer_results",
    "review": "SELECT COUNT(*) FROM review_results",
    "gateway": "SELECT COUNT(*) FROM gateway_cases WHERE status IN ('reviewed', 'withdrawn')",
}
DEFAULT_DOWN = {"service": 2.0, "broker": 10.0, "pg": 10.0}
RESULTS = REPO / "bench" / "results" / "distributed.json"
DRAINABLE = ("grouper", "pricer", "review")
# members each process of a stage has in its consumer group: one per subscription (services/<name>/app.py)
MEMBERS = {"grouper": 1, "pricer": 1, "review": 2, "gateway": 1}  # the gateway takes the imports: it cannot be held
console = Console(stderr=True)
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the sampler's clients while the broker is away


def say(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)


# --------------------------------------------------------------------------- the system under test

@dataclass
class System:
    """The servers, the five service processes and what watches them."""

    args: argparse.Namespace
    root: Path
    pg: Postgres | None = None
    kafka: Kafka | None = None
    bootstrap: str = ""
    admin_url: str = ""
    namespace: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:8]}.")
    dbs: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    engines: dict[str, AsyncEngine] = field(default_factory=dict)
    bureau: dict[str, str] = field(default_factory=dict)
    hospital_tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    service_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    bench_backends: dict[int, float] = field(default_factory=dict)  # pid: CPU seconds last seen

    async def start_servers(self) -> None:
        if self.args.pg:
            self.admin_url = self.args.pg
        else:
            say("starting PostgreSQL")
            self.pg = await asyncio.to_thread(
                Postgres, self.root, "shared_preload_libraries = 'pg_stat_statements'\n"
                "pg_stat_statements.track = all\n" if self.args.pg_statements else "")
            self.admin_url = self.pg.admin_url
        if self.args.kafka:
            self.bootstrap = self.args.kafka
        else:
            say("starting Kafka")
            self.kafka = Kafka(self.root, self.args.kafka_version)  # spawned from the main thread
        admin = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                for s in STAGES:
                    name = f"{self.namespace.strip('.')}_{s}"
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
                    self.dbs[s] = self.admin_url.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.dispose()
        if self.kafka is not None:
            self.bootstrap = self.kafka.bootstrap

    def env(self, service: str, scheme_path: Path) -> dict[str, str]:
        env = {"DRGDIP_BUS": f"kafka://{self.bootstrap}", "DRGDIP_DB": self.dbs[service],
               "DRGDIP_NAMESPACE": self.namespace, "DRGDIP_PARTITIONS": str(self.args.partitions),
               "DRGDIP_SCHEMES_DIR": str(scheme_path.resolve().parent),
               "DRGDIP_DEFAULT_SCHEME": scheme_path.name, "DRGDIP_DICTIONARY_SCHEME": str(scheme_path),
               "DRGDIP_LOG_FORMAT": "json", "DRGDIP_SERVICE_TOKEN": self.service_token,
               "DRGDIP_PSN_KEY_SECRET": self.service_token}
        if self.args.fault:  # back soon after the database: the recovery time is the pipeline's
            env |= {"DRGDIP_TRANSIENT_RETRY_MS": "200", "DRGDIP_TRANSIENT_RETRY_MAX_MS": "2000"}
        return env

    async def start_services(self, scheme_path: Path) -> None:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        for s in STAGES:
            for i in range(1, self.args.replicas.get(s, 1) + 1):
                name = s if i == 1 else f"{s}.{i}"
                self.services[name] = Service(name, self.env(s, scheme_path), logs, stage=s)
        gateway_env = {f"DRGDIP_{s.upper()}_URL": self.services[s].url
                       for s in ("ingest", "grouper", "pricer", "review")}
        for svc in self.instances("gateway"):
            svc.env |= gateway_env
        for s in STAGES:  # one after the other: each migrates its own database at start
            say(f"starting {s}")
            svc = self.services[s].start(wait=False)
            await wait_for(partial(_ready, svc), 180, f"{s} ready")
        more = [svc for svc in self.services.values() if svc.name not in STAGES]
        if more:  # the databases are migrated: the other instances start side by side
            say(f"starting {', '.join(svc.name for svc in more)}")
            await self.start_all(more)
        for s in STAGES:
            self.engines[s] = create_async_engine(self.dbs[s], pool_size=2, max_overflow=0,
                                                  pool_pre_ping=True, connect_args={"timeout": 3})
            event.listen(self.engines[s].sync_engine, "connect", self._bench_backend)

    def _bench_backend(self, dbapi_connection: Any, _record: Any) -> None:
        """Note the server process of each connection of the benchmark's own (its samples and
        counts): what PostgreSQL spends answering them is not the pipeline's."""
        self.bench_backends.setdefault(dbapi_connection.driver_connection.get_server_pid(), 0.0)

    def bench_reads_cpu(self) -> float:
        """CPU seconds the server processes of the benchmark's own connections spent so far (a
        process that ended keeps what it was last seen to spend)."""
        for pid in self.bench_backends:
            st = _stat(pid)
            if st is not None and self.pg is not None and int(st[1]) == self.pg.pid:
                self.bench_backends[pid] = (int(st[11]) + int(st[12])) / CLOCK_TICKS
        return sum(self.bench_backends.values())

    def instances(self, stage: str) -> list[Service]:
        return [svc for svc in self.services.values() if (svc.stage or svc.name) == stage]

    async def start_all(self, services: list[Service]) -> None:
        for svc in services:
            svc.start(wait=False)
        await asyncio.gather(*(wait_for(partial(_ready, svc), 180, f"{svc.name} ready") for svc in services))

    async def stop_all(self, services: list[Service]) -> None:
        await asyncio.gather(*(asyncio.to_thread(svc.stop) for svc in services))

    async def make_tokens(self, hospitals: list[str]) -> None:
        from services.gateway.repository import create_token

        async with self.engines["gateway"].begin() as conn:
            self.bureau = {"authorization": f"Bearer {(await create_token(conn, 'bureau-admin', None))[1]}"}
            for h in hospitals:
                self.hospital_tokens[h] = {"authorization": f"Bearer {(await create_token(conn, 'hospital', h))[1]}"}

    def processes(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {s: p.pid for s, p in self.services.items()}
        if self.pg is not None:
            out["postgresql"] = self.pg.pid
        if self.kafka is not None:
            out["kafka"] = self.kafka.pid
        return out

    async def stop(self) -> None:
        for e in self.engines.values():
            with contextlib.suppress(Exception):
                await e.dispose()
        self.stop_processes()

    def stop_processes(self) -> None:
        """Idempotent: also the last resort in main() when the event loop did not get to it."""
        for p in reversed(list(self.services.values())):
            with contextlib.suppress(Exception):
                p.stop()
        if self.kafka is not None:
            self.kafka.destroy()
        if self.pg is not None:
            self.pg.destroy()


def _ready(p: Service) -> bool:
    p.check_alive()
    return p.ready()


async def wait_for(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str,
                   every: float = 0.5) -> float:
    """Seconds until `check` is true (it runs in a thread when it is a plain function)."""
    started = time.monotonic()
    while True:
        got = check() if asyncio.iscoroutinefunction(check) else await asyncio.to_thread(check)
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


# --------------------------------------------------------------------------- the sampler

class CpuTracker:
    """CPU seconds of a server whose process may be replaced (a restart): what the earlier
    incarnations spent is kept."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.before = self.last = 0.0

    def sample(self, pid: int | None, tree: dict[int, list[int]]) -> float:
        if pid is not None and pid != self.pid:
            self.before += self.last
            self.last, self.pid = 0.0, pid
        if pid is not None and (cpu := cpu_seconds(pid, tree)) is not None:
            self.last = cpu
        return self.before + self.last


class Sampler:
    """Every second: lags, outboxes, stage counts, CPU and memory of every process."""

    def __init__(self, system: System) -> None:
        self.sys = system
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.peak_rss: dict[str, int] = {}
        self.cpu = {"postgresql": CpuTracker(), "kafka": CpuTracker()}
        self._admin: Any = None
        self._consumer: Any = None
        self._task: asyncio.Task | None = None
        self.committed_once: set[str] = set()

    async def _kafka_clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.sys.bootstrap, request_timeout_ms=3000)
            consumer = AIOKafkaConsumer(bootstrap_servers=self.sys.bootstrap, enable_auto_commit=False,
                                        request_timeout_ms=3000)
            await admin.start()
            await consumer.start()
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def lags(self) -> dict[str, int]:
        from aiokafka import TopicPartition

        admin, consumer = await self._kafka_clients()
        ns, parts = self.sys.namespace, self.sys.args.partitions
        tps = {g: [TopicPartition(ns + t, p) for t in topics for p in range(parts)] for g, topics in CONSUMES.items()}
        ends = await consumer.end_offsets(sorted({tp for v in tps.values() for tp in v}))
        out = {}
        for g, wanted in tps.items():
            committed = await admin.list_consumer_group_offsets(ns + g)
            if not committed and g in self.committed_once:
                # a coordinator still loading after a broker restart answers with no offsets
                raise RuntimeError(f"no committed offsets for {g} (coordinator loading)")
            if committed:
                self.committed_once.add(g)
            out[g] = sum(max(ends[tp] - max(committed[tp].offset if tp in committed else 0, 0), 0)
                         for tp in wanted)
        return out

    async def tables(self) -> dict[str, int]:
        async def one(s: str) -> dict[str, int]:
            async with self.sys.engines[s].connect() as conn:
                got = {f"done.{s}": int(await conn.scalar(text(COUNT_SQL[s])) or 0),
                       f"outbox.{s}": int(await conn.scalar(text(f"SELECT COUNT(*) FROM {s}_outbox")) or 0)}
                if s == "ingest":
                    got["pending"] = int(await conn.scalar(text(
                        "SELECT COUNT(*) FROM ingest_raw WHERE status = 'pending'")) or 0)
                return got

        out: dict[str, int] = {}
        for part in await asyncio.gather(*(one(s) for s in STAGES)):
            out |= part
        return out

    def procs(self) -> dict[str, Any]:
        tree = _children()
        out: dict[str, Any] = {}
        for name, svc in self.sys.services.items():
            cpu, rss = svc.sample(tree)
            out[f"cpu.{name}"], out[f"rss.{name}"] = cpu, rss
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), svc.peak_rss)
        for name, pid in (("postgresql", self.sys.pg.pid if self.sys.pg else None),
                          ("kafka", self.sys.kafka.pid if self.sys.kafka else None)):
            if (self.sys.pg if name == "postgresql" else self.sys.kafka) is None:
                continue
            out[f"cpu.{name}"] = self.cpu[name].sample(pid, tree)
            if name == "postgresql":  # the pipeline's: less what the benchmark's own reads cost
                out["cpu.bench_reads"] = self.sys.bench_reads_cpu()
                out[f"cpu.{name}"] -= out["cpu.bench_reads"]
            if pid is not None:
                rss = tree_rss(pid, tree) if name == "postgresql" else (memory(pid) or (0, 0))[0]
                out[f"rss.{name}"] = rss
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
        return out

    async def sample(self) -> dict[str, Any]:
        s: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 2), "load": uptime()}
        s |= self.procs()
        lags, tables = await asyncio.gather(asyncio.wait_for(self.lags(), 4),
                                            asyncio.wait_for(self.tables(), 4), return_exceptions=True)
        if isinstance(lags, BaseException):
            s["lag_error"] = type(lags).__name__
        else:
            s |= {f"lag.{g}": n for g, n in lags.items()}
        if isinstance(tables, BaseException):
            s["db_error"] = type(tables).__name__
        else:
            s |= tables
        return s

    async def run(self) -> None:
        while True:
            due = time.monotonic() + 1
            self.samples.append(await self.sample())
            await asyncio.sleep(max(due - time.monotonic(), 0.05))

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            if self._admin is not None:
                await self._admin.close()
        with contextlib.suppress(Exception):
            if self._consumer is not None:
                await self._consumer.stop()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def last(self) -> dict[str, Any]:
        return self.samples[-1] if self.samples else {}


def backlog(s: dict[str, Any]) -> int | None:
    """Work waiting anywhere: every consumer's lag, every outbox, ingest's undecided lists
    (None when the broker or the database did not answer)."""
    if "lag_error" in s or "db_error" in s or "lag.grouper" not in s or "pending" not in s:
        return None
    return (sum(s[f"lag.{g}"] for g in CONSUMES) + sum(s[f"outbox.{st}"] for st in STAGES) + s["pending"])


async def wait_idle(sampler: Sampler, timeout: float, after: float = 0.0) -> float:
    """Seconds since the sampler started at which the pipeline was first idle (two samples in a
    row with nothing waiting) after `after`."""
    deadline = time.monotonic() + timeout
    seen = len(sampler.samples)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        fresh = [s for s in sampler.samples[seen - 1 if seen else 0:] if s["t"] >= after]
        for a, b in zip(fresh, fresh[1:], strict=False):
            if backlog(a) == 0 and backlog(b) == 0:
                return float(a["t"])
    raise TimeoutError(f"the pipeline was not idle within {timeout:.0f} s: {sampler.last()}")


# --------------------------------------------------------------------------- region and policies

@dataclass
class Region:
    path: Path
    lists: int
    hospitals: list[str]
    policies: list[bytes]


def make_region(scheme_path: Path, cases: int, hospitals: int, seed: int, out: Path) -> Region:
    scheme = load_scheme(scheme_path)
    t = time.perf_counter()
    gen = RegionGenerator(scheme, hospitals=hospitals, cases=cases, seed=seed, years=YEARS)
    history = write_region(gen, out)
    say(f"generated {cases:,} lists ({scheme.id}, {hospitals} hospitals) in {time.perf_counter() - t:.1f} s")
    policies = [orjson.dumps(p.to_document()) for p in region_policies(gen, history)]
    return Region(out, cases, [h.code for h in gen.hospitals], policies)


async def import_policies(system: System, region: Region) -> None:
    async with httpx.AsyncClient(base_url=system.services["gateway"].url, timeout=60,
                                 headers=system.bureau) as client:
        for doc in region.policies:
            r = await client.post("/api/v1/policies", content=doc,
                                  headers={"content-type": "application/json"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"policy import refused: {r.status_code} {r.text[:300]}")


# --------------------------------------------------------------------------- the final count

async def count_cases(system: System) -> dict[str, int]:
    """Every accepted case in each stage: lost, duplicated (as tests/pipeline checks it)."""
    q = {
        "ingest": {"accepted_cases": "SELECT COUNT(DISTINCT case_id) FROM ingest_lists",
                   "accepted_lists": "SELECT COUNT(*) FROM ingest_lists",
                   "raw_pending": "SELECT COUNT(*) FROM ingest_raw WHERE status = 'pending'"},
        "grouper": {"grouper_rows": "SELECT COUNT(*) FROM grouper_results",
                    "grouper_lists": "SELECT COUNT(*) FROM (SELECT DISTINCT case_id, list_version "
                                     "FROM grouper_results) d"},
        "pricer": {"pricer_rows": "SELECT COUNT(*) FROM pricer_results",
                   "pricer_lists": "SELECT COUNT(*) FROM (SELECT DISTINCT case_id, list_version "
                                   "FROM pricer_results) d"},
        "review": {"review_cases": "SELECT COUNT(*) FROM review_results"},
        "gateway": {"gateway_done": COUNT_SQL["gateway"],
                    "gateway_cases": "SELECT COUNT(*) FROM gateway_cases",
                    "timeline_repeats": "SELECT COUNT(*) FROM (SELECT case_id, list_version, event_type "
                                        "FROM gateway_timeline WHERE event_type <> 'case-flagged' GROUP BY "
                                        "case_id, list_version, event_type HAVING COUNT(*) > 1) d",
                    "events_applied_twice": "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM gateway_timeline"},
    }
    out: dict[str, int] = {}
    for s, queries in q.items():
        async with system.engines[s].connect() as conn:
            for k, sql in queries.items():
                out[k] = int(await conn.scalar(text(sql)) or 0)
    async with system.engines["pricer"].connect() as conn:
        for status, n in (await conn.execute(text(
                "SELECT status, COUNT(*) FROM pricer_results GROUP BY status ORDER BY status"))).all():
            out[f"priced.{status}"] = int(n)
    from shared.dlq import DeadLetters

    letters = DeadLetters(f"kafka://{system.bootstrap}", system.namespace)
    try:
        out["dead_letters"] = len(await letters.letters())
    finally:
        await letters.close()
    out["lost_in_review"] = out["accepted_cases"] - out["review_cases"]
    out["lost_in_read_model"] = out["accepted_cases"] - out["gateway_done"]
    out["duplicated"] = (out["grouper_rows"] - out["grouper_lists"] + out["pricer_rows"] - out["pricer_lists"]
                         + out["timeline_repeats"] + out["events_applied_twice"])
    return out


def print_count(c: dict[str, int]) -> bool:
    ok = c["lost_in_review"] == 0 and c["lost_in_read_model"] == 0 and c["duplicated"] == 0 \
        and c["dead_letters"] == 0 and c["raw_pending"] == 0
    print(f"count: {c['accepted_cases']:,} accepted cases ({c['accepted_lists']:,} list versions); "
          f"grouped {c['grouper_lists']:,}, priced {c['pricer_lists']:,}, reviewed {c['review_cases']:,}, "
          f"read model {c['gateway_done']:,} done of {c['gateway_cases']:,}")
    print("       priced: " + ", ".join(f"{n:,} {k[7:]}" for k, n in c.items() if k.startswith("priced.")))
    print(f"       lost {c['lost_in_review']} (review) / {c['lost_in_read_model']} (read model), "
          f"duplicated {c['duplicated']}, dead letters {c['dead_letters']}, undecided lists {c['raw_pending']}"
          f"  -> {'every accepted list reviewed exactly once' if ok else 'NOT exactly once'}")
    return ok


# --------------------------------------------------------------------------- reports

def mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def print_lag_table(samples: list[dict[str, Any]], start: float, end: float, rows: int = 24) -> None:
    window = [s for s in samples if start <= s["t"] <= end + 1]
    if not window:
        return
    step = max(1, math.ceil(len(window) / rows))
    print(f"\nlag over time (every {step} s of {len(window)} one-second samples; t from the import's start)")
    print(f"{'t s':>6} {'grouper':>8} {'pricer':>8} {'review':>8} {'gateway':>8} {'outbox':>8} "
          f"{'pending':>8} {'reviewed':>9}")
    for s in window[::step] + ([window[-1]] if (len(window) - 1) % step else []):
        if backlog(s) is None:
            print(f"{s['t'] - start:6.0f}   (unavailable: {s.get('lag_error') or s.get('db_error')})")
            continue
        print(f"{s['t'] - start:6.0f} " + " ".join(f"{s[f'lag.{g}']:>8,}" for g in CONSUMES)
              + f" {sum(s[f'outbox.{st}'] for st in STAGES):>8,} {s['pending']:>8,} {s['done.gateway']:>9,}")


def print_resources(sampler: Sampler, a: dict[str, Any], b: dict[str, Any], cases: int, seconds: float,
                    idle: dict[str, float], what: str = "from the import's start until idle",
                    ) -> dict[str, dict[str, float]]:
    """CPU µs per case, cores and peak RSS of every process (each instance of a stage, then the
    stage's total when it has several); returns them by process and by stage."""
    print(f"\nCPU and memory {what} ({seconds:.1f} s, {cases:,} cases); idle cores: before the import; "
          f"{uptime()}")
    print(f"{'process':<13}{'CPU s':>8}{'µs/case':>9}{'net µs':>8}{'cores':>7}{'idle cores':>11}"
          f"{'peak RSS MiB':>14}{'final RSS MiB':>15}   (net: less what it spends idle)")
    procs: dict[str, dict[str, float]] = {}
    stages: dict[str, dict[str, float]] = {}
    total = 0.0
    names = [*sampler.sys.services, "postgresql", "kafka"]
    for name in names:
        if f"cpu.{name}" not in b:
            if name in ("postgresql", "kafka"):
                print(f"{name:<13}{'n/a (external server)':>30}")
            continue
        cpu = b[f"cpu.{name}"] - a.get(f"cpu.{name}", 0.0)
        peak = sampler.peak_rss.get(name, 0)
        net = max(cpu - idle.get(name, 0.0) * seconds, 0.0)
        procs[name] = {"cpu_s": round(cpu, 2), "cpu_us_per_case": round(cpu / cases * 1e6),
                       "net_cpu_us_per_case": round(net / cases * 1e6),
                       "cores": round(cpu / seconds, 3), "idle_cores": round(idle.get(name, 0.0), 3),
                       "peak_rss_mib": round(peak / 2**20)}
        svc = sampler.sys.services.get(name)
        stage = (svc.stage or svc.name) if svc is not None else name
        st = stages.setdefault(stage, {"cpu_s": 0.0, "net_cpu_s": 0.0, "instances": 0, "peak_rss_mib": 0})
        st["cpu_s"] += cpu
        st["net_cpu_s"] += net
        st["instances"] += 1
        st["peak_rss_mib"] = max(st["peak_rss_mib"], round(peak / 2**20))
        total += cpu
        print(f"{name:<13}{cpu:>8.1f}{cpu / cases * 1e6:>9.0f}{net / cases * 1e6:>8.0f}{cpu / seconds:>7.2f}"
              f"{idle.get(name, 0):>11.2f}"
              f"{mib(peak):>14}{mib(b.get(f'rss.{name}', 0)):>15}")
    for stage, st in stages.items():
        st["cpu_us_per_case"] = round(st["cpu_s"] / cases * 1e6)
        st["net_cpu_us_per_case"] = round(st.pop("net_cpu_s") / cases * 1e6)
        st["cpu_s"] = round(st["cpu_s"], 2)
        if st["instances"] > 1:
            print(f"{stage + ' (all)':<13}{st['cpu_s']:>8.1f}{st['cpu_us_per_case']:>9.0f}"
                  f"{st['net_cpu_us_per_case']:>8.0f}{st['cpu_s'] / seconds:>7.2f}")
    net_total = sum(v["net_cpu_us_per_case"] for v in stages.values())
    print(f"{'all':<13}{total:>8.1f}{total / cases * 1e6:>9.0f}{net_total:>8.0f}{total / seconds:>7.2f}"
          f"{sum(idle.values()):>11.2f}")
    bench_reads = b.get("cpu.bench_reads", 0.0) - a.get("cpu.bench_reads", 0.0)
    if "cpu.bench_reads" in b:
        print(f"(postgresql: less the {bench_reads:.2f} s, {bench_reads / cases * 1e6:.0f} µs per case, its backends "
              "spent answering this benchmark's own reads: the once-a-second counts of each stage's rows)")
    return {"processes": procs, "stages": stages,
            "all": {"cpu_s": round(total, 2), "cpu_us_per_case": round(total / cases * 1e6),
                    "net_cpu_us_per_case": net_total},
            "bench_reads_us_per_case": round(bench_reads / cases * 1e6)}


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


def save_result(key: str, entry: dict[str, Any]) -> None:
    """Keep a run's figures in bench/results/distributed.json (one entry per mode and stage)."""
    results = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
    results[key] = {"date": str(date.today()), "cores": os.cpu_count(), "python": platform.python_version(),
                    **entry}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    say(f"figures kept in {RESULTS.relative_to(REPO)} ({key!r})")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) // 2**20
    return (f"{date.today()} · {os.cpu_count()} cores ({model}), {mem} GiB · load average "
            f"{os.getloadavg()[0]:.1f} at the start · Python {platform.python_version()}")


# --------------------------------------------------------------------------- modes

async def file_body(path: Path, size: int = 1 << 16) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


async def throughput(system: System, region: Region, sampler: Sampler) -> None:
    await asyncio.sleep(1.5)
    idle_from = sampler.last()
    await asyncio.sleep(5)  # what the processes spend doing nothing (the broker mostly)
    start_sample = sampler.last()
    idle = {k[4:]: (start_sample[k] - idle_from.get(k, 0.0)) / max(start_sample["t"] - idle_from["t"], 1e-9)
            for k in start_sample if k.startswith("cpu.") and k != "cpu.bench_reads"}
    if system.args.pg_statements:
        await reset_statements(system)
    t_start = sampler.now()
    say(f"importing {region.lists:,} lists through the gateway")
    async with httpx.AsyncClient(base_url=system.services["gateway"].url, timeout=None,
                                 headers=system.bureau) as client:
        r = await client.post("/api/v1/settlement-lists:import", content=file_body(region.path))
    t_imported = sampler.now()
    if r.status_code != 200:
        raise RuntimeError(f"import failed: {r.status_code} {r.text[:300]}")
    summary = r.json()
    say(f"import answered after {t_imported - t_start:.1f} s: {summary}")
    t_idle = await wait_idle(sampler, system.args.timeout, after=t_imported)
    await asyncio.sleep(1.2)
    end_sample = next(s for s in sampler.samples if s["t"] >= t_idle)
    counted = await count_cases(system)
    cases = counted["accepted_cases"]
    seconds = t_idle - t_start

    load_start = start_sample.get("load", "")
    print(f"\n== throughput: {region.lists:,} lists, {len(region.hospitals)} hospitals, "
          f"{system.args.partitions} partitions, processes per stage: {replicas_text(system)}")
    print(machine())
    print(f"import: {summary['lines']:,} lines, {summary['accepted']:,} accepted, {summary['rejected']:,} rejected, "
          f"{summary.get('duplicate', 0):,} duplicate; answered after {t_imported - t_start:.1f} s "
          f"({summary['lines'] / (t_imported - t_start):,.0f} lists/s stored and checked)")
    print(f"end to end: {cases:,} cases in {seconds:.1f} s = {cases / seconds:,.0f} cases/s "
          "(import start until every lag, outbox and undecided list is 0)")
    print(f"\n{'stage':<10}{'done after s':>14}{'cases/s':>10}{'busiest s':>11}   (done: first sample with the "
          "stage's final row count; busiest: its best 3 s)")
    rates: dict[str, dict[str, float]] = {}
    for st in STAGES:
        final = end_sample.get(f"done.{st}", 0)
        first = next((s["t"] for s in sampler.samples if s["t"] >= t_start and s.get(f"done.{st}") == final), t_idle)
        peak = best_rate([s for s in sampler.samples if t_start <= s["t"] <= t_idle + 1], f"done.{st}")
        rates[st] = {"done_after_s": round(first - t_start, 1),
                     "cases_per_s": round(final / max(first - t_start, 1e-9)), "best_3s_cases_per_s": round(peak)}
        print(f"{st:<10}{first - t_start:>14.1f}{final / max(first - t_start, 1e-9):>10,.0f}{peak:>11,.0f}")
    print_lag_table(sampler.samples, t_start, t_idle)
    cpu = print_resources(sampler, start_sample, end_sample, cases, seconds, idle)
    print_capacity({k: v["net_cpu_us_per_case"] / 1e6 for k, v in cpu["stages"].items()})
    if system.args.pg_statements:
        await print_statements(system, cases, system.args.pg_statements)
    print()
    ok = print_count(counted)
    save_result(f"throughput.{system.args.cases}", {
        "mode": "throughput", "lists": region.lists, "cases": cases, "partitions": system.args.partitions,
        "replicas": {st: len(system.instances(st)) for st in STAGES},
        "load_average_at_start": load_start, "load_average_at_end": uptime(),
        "import_answered_after_s": round(t_imported - t_start, 1), "seconds": round(seconds, 1),
        "cases_per_s": round(cases / seconds), "stages": rates, "cpu": cpu, "exactly_once": ok})


async def reset_statements(system: System) -> None:
    """--pg-statements: the statistics start with the import (pg_stat_statements is the cluster's,
    the table and database counters each database's own)."""
    for s in STAGES:
        async with system.engines[s].begin() as conn:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            await conn.execute(text("SELECT pg_stat_statements_reset(), pg_stat_reset()"))


async def print_statements(system: System, cases: int, top: int) -> None:
    """--pg-statements: PostgreSQL's costliest statements (execution time, every database and
    this benchmark's own polls included), each table's updates that were HOT, temporary files."""
    stmts: list[tuple[str, Any]] = []
    tables: list[tuple[str, Any]] = []
    temp = {}
    for s in STAGES:
        async with system.engines[s].connect() as conn:
            stmts += [(s, r) for r in (await conn.execute(text(
                "SELECT calls, rows, total_exec_time, shared_blks_hit + shared_blks_read AS blks, "
                "temp_blks_written, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT :n"), {"n": top})).all()]
            tables += [(s, r) for r in (await conn.execute(text(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, autovacuum_count "
                "FROM pg_stat_user_tables WHERE n_tup_upd + n_tup_ins > 0 ORDER BY relname"))).all()]
            temp[s] = (await conn.execute(text(
                "SELECT temp_files, temp_bytes FROM pg_stat_database WHERE datname = current_database()"))).one()
    total = sum(r.total_exec_time for _, r in stmts)
    print(f"\nPostgreSQL statements by execution time (µs per case; the {top} costliest of each database)")
    print(f"{'database':<9}{'µs/case':>8}{'calls':>8}{'rows':>9}{'blocks':>9}{'temp blks':>10}  statement")
    for s, r in sorted(stmts, key=lambda x: -x[1].total_exec_time)[:top * 2]:
        q = " ".join(r.query.split())
        print(f"{s:<9}{r.total_exec_time * 1000 / cases:>8.1f}{r.calls:>8,}{r.rows:>9,}{r.blks:>9,}"
              f"{r.temp_blks_written:>10,}  {q[:110]}")
    print(f"(these {len(stmts)} statements: {total * 1000 / cases:.0f} µs per case of execution time)")
    print("tables written: inserted / updated (of which HOT) / deleted, autovacuums")
    for s, r in tables:
        print(f"  {s:<9}{r.relname:<36}{r.n_tup_ins:>9,}{r.n_tup_upd:>9,} ({r.n_tup_hot_upd:>7,}){r.n_tup_del:>9,}"
              f"{r.autovacuum_count:>4}")
    print("temporary files: " + ", ".join(f"{s} {n} ({b / 2**20:.1f} MiB)" for s, (n, b) in temp.items()))


def best_rate(samples: list[dict[str, Any]], key: str, span: float = 3.0) -> float:
    """The highest rate of `key`'s growth over `span` seconds of the samples."""
    best = 0.0
    for i, a in enumerate(samples):
        if key not in a:
            continue
        for b in samples[i + 1:]:
            if key in b and b["t"] - a["t"] >= span:
                best = max(best, (b[key] - a[key]) / (b["t"] - a["t"]))
                break
    return best


def replicas_text(system: System) -> str:
    return ", ".join(f"{st} {len(system.instances(st))}" for st in STAGES)


def print_capacity(per_case: dict[str, float]) -> None:
    """Cores a province needs, from the CPU each process spent per case."""
    if not per_case:
        return
    total = sum(per_case.values())
    print(f"\ncapacity: {total * 1000:.2f} ms of CPU per case in all processes, less what they spend idle "
          "(a core at 70 % busy; one PostgreSQL and one broker as measured here)")
    for label, cases, hours in (("3,000 cases/s (10.8 M cases an hour)", 3000 * 3600, 1),
                                ("7 M cases (a province's year) in 24 h", 7_000_000, 24),
                                ("7 M cases in 8 h", 7_000_000, 8),
                                ("a month (583 k cases) in 8 h", 7_000_000 / 12, 8),
                                ("a month in 1 h", 7_000_000 / 12, 1)):
        rate = cases / (hours * 3600)
        cores = {n: rate * c / 0.7 for n, c in per_case.items()}
        detail = ", ".join(f"{n} {v:.1f}" for n, v in cores.items())
        print(f"  {label}: {rate:,.0f} cases/s -> {sum(cores.values()):.1f} cores ({detail})")


# --------------------------------------------------------------------------- drain: one stage's own rate

async def group_state(system: System, sampler: Sampler, group: str) -> tuple[str, int]:
    """(state, members holding partitions) of a consumer group, as its coordinator says."""
    admin, _consumer = await sampler._kafka_clients()
    for resp in await admin.describe_consumer_groups([system.namespace + group]):
        for g in resp.groups:  # (error, group, state, protocol type, protocol, members, …)
            return str(g[2]), sum(1 for m in g[5] if m[-1])
    return "", 0


async def group_backlog(system: System, sampler: Sampler, stage: str) -> int:
    """Events the stage's group has not committed, plus the stage's outbox."""
    from aiokafka import TopicPartition

    admin, consumer = await sampler._kafka_clients()
    ns, parts = system.namespace, system.args.partitions
    tps = [TopicPartition(ns + t, p) for t in CONSUMES[stage] for p in range(parts)]
    ends = await consumer.end_offsets(tps)
    committed = await admin.list_consumer_group_offsets(ns + stage)
    lag = sum(max(ends[tp] - max(committed[tp].offset if tp in committed else 0, 0), 0) for tp in tps)
    async with system.engines[stage].connect() as conn:
        outbox = int(await conn.scalar(text(f"SELECT COUNT(*) FROM {stage}_outbox")) or 0)
    return lag + outbox


async def wait_upstream(system: System, sampler: Sampler, stage: str, timeout: float) -> None:
    """Until everything before `stage` is idle (its input all in the topic): two samples in a row."""
    before = STAGES[:STAGES.index(stage)]

    def idle(s: dict[str, Any]) -> bool:
        keys = [f"outbox.{st}" for st in before] + [f"lag.{g}" for g in before if g in CONSUMES] + ["pending"]
        return all(k in s for k in keys) and not any(s[k] for k in keys)

    seen = len(sampler.samples)
    await wait_for(lambda: len(sampler.samples) > seen + 1 and idle(sampler.samples[-1])
                   and idle(sampler.samples[-2]), timeout, f"the stages before {stage} idle")


@dataclass
class DrainRound:
    instances: int
    events: int
    settle_s: float
    seconds: float
    steady_rate: float
    cpu: dict[str, Any]
    loops: dict[str, dict[str, float]]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def drain_round(system: System, sampler: Sampler, stage: str, body: bytes, n: int) -> DrainRound:
    held, after = system.instances(stage), [svc for st in STAGES[STAGES.index(stage) + 1:]
                                            for svc in system.instances(st)]
    await system.stop_all(held)
    async with httpx.AsyncClient(base_url=system.services["gateway"].url, timeout=None,
                                 headers=system.bureau) as client:
        r = await client.post("/api/v1/settlement-lists:import", content=body)
    if r.status_code != 200:
        raise RuntimeError(f"import failed: {r.status_code} {r.text[:300]}")
    got = r.json()
    say(f"imported {got['lines']:,} lines ({got['accepted']:,} accepted); waiting for the stages before {stage}")
    await wait_upstream(system, sampler, stage, system.args.timeout)
    await system.stop_all(after)  # nothing else competes for the cores while the stage drains
    events = await group_backlog(system, sampler, stage)
    locker = create_async_engine(system.dbs[stage], pool_size=1, max_overflow=0)
    try:
        conn: AsyncConnection = await locker.connect()
        tx = await conn.begin()
        # the stage's first batches wait here while its processes start and its group settles
        await conn.execute(text(f"LOCK TABLE {stage}_inbox IN EXCLUSIVE MODE"))
        t_spawn = time.monotonic()
        say(f"starting {n} {stage} process(es) on a backlog of {events:,} events")
        await system.start_all(held[:n])
        while (got := await group_state(system, sampler, stage)) != ("Stable", n * MEMBERS[stage]):
            if time.monotonic() - t_spawn > 120:
                raise TimeoutError(f"{stage}'s group did not settle with {n * MEMBERS[stage]} members: {got}")
            await asyncio.sleep(0.2)
        settle = time.monotonic() - t_spawn
        cpu_from = sampler.procs()
        sched_from = {svc.name: schedstat(svc.pid) if svc.pid else None for svc in held[:n]}
        t0 = time.monotonic()
        await tx.commit()
        await conn.close()
    finally:
        await locker.dispose()
    points: list[tuple[float, int]] = []
    while True:
        left = await group_backlog(system, sampler, stage)
        points.append((time.monotonic() - t0, left))
        if left == 0:
            break
        if time.monotonic() - t0 > system.args.timeout:
            raise TimeoutError(f"{stage} did not drain its backlog: {left:,} left")
        await asyncio.sleep(0.2)
    seconds = points[-1][0]
    cpu_to = sampler.procs()
    loops = {}
    for svc in held[:n]:  # where each process's event loop spent the drain
        a, b = sched_from.get(svc.name), schedstat(svc.pid) if svc.pid else None
        if a and b:
            run, wait = (b[0] - a[0]) / seconds, (b[1] - a[1]) / seconds
            loops[svc.name] = {"running": round(run, 3), "waiting_for_a_core": round(wait, 3),
                               "blocked": round(max(1 - run - wait, 0), 3)}
    # the middle 80 % of the backlog: without the first batches' start and the last's tail
    hi = next((t for t, left in points if left <= events * 0.9), 0.0)
    lo = next((t for t, left in points if left <= events * 0.1), seconds)
    steady = events * 0.8 / (lo - hi) if lo > hi else events / seconds
    cpu = print_resources(sampler, cpu_from, cpu_to, events, seconds, {},
                          what=f"of {n} {stage} process(es) draining {events:,} events")
    for svc in held[n:]:
        cpu["processes"].pop(svc.name, None)
    for name, lp in loops.items():
        print(f"{name}'s event loop: running {lp['running']:.0%}, runnable but waiting for a core "
              f"{lp['waiting_for_a_core']:.0%}, blocked (database, broker, timers) {lp['blocked']:.0%}")
    await system.start_all(after)
    return DrainRound(n, events, settle, seconds, steady, cpu, loops)


async def drain(system: System, region: Region, sampler: Sampler) -> None:
    stage = system.args.drain
    n = len(system.instances(stage))
    lines = region.path.read_bytes().splitlines(keepends=True)
    halves = [b"".join(lines[: len(lines) // 2]), b"".join(lines[len(lines) // 2:])]
    load_start = uptime()
    rounds = [await drain_round(system, sampler, stage, halves[0], 1)]
    if n > 1:
        rounds.append(await drain_round(system, sampler, stage, halves[1], n))
    await system.start_all([svc for svc in system.services.values() if svc.pid is None])
    t_idle = await wait_idle(sampler, system.args.timeout, after=sampler.now())
    counted = await count_cases(system)

    print(f"\n== drain: {stage}'s own rate on a backlog, {system.args.partitions} partitions, "
          f"{region.lists:,} lists in two halves")
    print(machine())
    print("(the stage's inbox is locked while its processes start and their group settles; cases/s from "
          "the release until its lag and outbox are 0; steady: the middle 80 % of the backlog)")
    print(f"{'processes':>9}{'events':>8}{'settle s':>9}{'drain s':>8}{'cases/s':>9}{'steady/s':>9}"
          f"{'speed-up':>9}   µs/case: {stage} (each process) · postgresql · kafka")
    base = rounds[0]
    for r in rounds:
        procs = r.cpu["processes"]
        mine = " + ".join(f"{procs[svc.name]['cpu_us_per_case']}" for svc in system.instances(stage)
                          if svc.name in procs)
        print(f"{r.instances:>9}{r.events:>8,}{r.settle_s:>9.1f}{r.seconds:>8.1f}{r.rate:>9,.0f}"
              f"{r.steady_rate:>9,.0f}{r.rate / base.rate:>8.2f}x   {mine} · "
              f"{procs.get('postgresql', {}).get('cpu_us_per_case', '-')} · "
              f"{procs.get('kafka', {}).get('cpu_us_per_case', '-')}")
    print(f"pipeline idle {t_idle:.0f} s after the sampler started")
    ok = print_count(counted)
    save_result(f"drain.{stage}", {
        "mode": "drain", "stage": stage, "lists": region.lists, "partitions": system.args.partitions,
        "load_average_at_start": load_start, "load_average_at_end": uptime(), "exactly_once": ok,
        "rounds": [{"instances": r.instances, "events": r.events, "settle_s": round(r.settle_s, 1),
                    "seconds": round(r.seconds, 2), "cases_per_s": round(r.rate),
                    "steady_cases_per_s": round(r.steady_rate),
                    "speedup": round(r.rate / base.rate, 2), "event_loops": r.loops, "cpu": r.cpu}
                   for r in rounds]})


async def latency(system: System, region: Region, sampler: Sampler) -> None:
    args = system.args
    pool = [(orjson.loads(line)) for line in region.path.read_bytes().splitlines()]
    random.Random(args.seed).shuffle(pool)
    needed = sum(int(r * args.duration) for r in args.rates)
    if len(pool) < needed:
        raise SystemExit(f"--latency needs {needed} lists for these rates: pass --cases {needed} or more")
    print(f"\n== latency: POST /api/v1/settlement-lists through the gateway (one list, its hospital's "
          f"token), open loop, {args.duration:.0f} s per rate")
    print(machine())
    print(f"{'req/s':>6}{'sent':>7}{'202':>6}{'4xx':>6}{'5xx/err':>8}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'p99 ms':>8}{'max ms':>8}{'achieved/s':>11}   CPU ms per request: gateway ingest postgresql client")
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=system.services["gateway"].url, timeout=30, limits=limits) as client:
        for rate in args.rates:
            n = int(rate * args.duration)
            batch, pool = pool[:n], pool[n:]
            results: list[tuple[int, float]] = []

            async def send(doc: dict[str, Any], due: float, results: list[tuple[int, float]] = results) -> None:
                hdr = system.hospital_tokens[doc["setlinfo"]["fixmedins_code"]]
                try:
                    r = await client.post("/api/v1/settlement-lists", content=orjson.dumps(doc),
                                          headers=hdr | {"content-type": "application/json"})
                    code = r.status_code
                except httpx.HTTPError:
                    code = 0
                results.append((code, time.perf_counter() - due))

            cpu_from, client_from = sampler.procs(), time.process_time()
            t0 = time.perf_counter() + 0.2
            tasks = []
            for i, doc in enumerate(batch):
                due = t0 + i / rate
                await asyncio.sleep(max(due - time.perf_counter(), 0))
                tasks.append(asyncio.create_task(send(doc, due)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - t0
            cpu_to, client_cpu = sampler.procs(), time.process_time() - client_from
            cost = "  ".join(f"{(cpu_to[k] - cpu_from[k]) / n * 1000:.1f}" if k in cpu_to else "n/a"
                             for k in ("cpu.gateway", "cpu.ingest", "cpu.postgresql"))
            ok = sorted(lat for code, lat in results if code == 202)
            codes = Counter(code for code, _ in results)
            bad = sum(v for k, v in codes.items() if 400 <= k < 500)
            err = sum(v for k, v in codes.items() if k == 0 or k >= 500)

            def pct(p: float, ok: list[float] = ok) -> str:
                return f"{ok[min(len(ok) - 1, math.ceil(p * len(ok)) - 1)] * 1000:.0f}" if ok else "-"

            print(f"{rate:>6}{n:>7}{len(ok):>6}{bad:>6}{err:>8}{pct(0.5):>8}{pct(0.95):>8}{pct(0.99):>8}"
                  f"{(ok[-1] * 1000 if ok else 0):>8.0f}{n / elapsed:>11.1f}   {cost}  {client_cpu / n * 1000:.1f}")
            await wait_idle(sampler, args.timeout, after=sampler.now())  # each rate on a drained pipeline
    print("(4xx: lists the generator breaks on purpose, refused by QC — answered, not timed)")
    print()
    print_count(await count_cases(system))


@dataclass
class FaultResult:
    kind: str
    at: float
    down: float
    back_after: float | None = None
    recovered_after: float | None = None
    peak_backlog: int = 0
    level: int = 0
    note: str = ""


class PacedImport:
    """Chunks of the region's lists imported at `rate` lists/s; a chunk whose request fails (the
    gateway or ingest killed, a 5xx) is sent again until it is answered — what a client does.
    Lines ingest had already kept come back as duplicates, never as second cases."""

    def __init__(self, system: System, region: Region, rate: float, chunk: int) -> None:
        self.sys, self.rate, self.chunk = system, rate, chunk
        self.lines = region.path.read_bytes().splitlines(keepends=True)
        self.retries = 0
        self.summary: Counter[str] = Counter()
        self.done = asyncio.Event()

    async def run(self) -> None:
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=self.sys.services["gateway"].url, timeout=300,
                                     headers=self.sys.bureau) as client:
            for k, i in enumerate(range(0, len(self.lines), self.chunk)):
                await asyncio.sleep(max(t0 + k * self.chunk / self.rate - time.monotonic(), 0))
                body = b"".join(self.lines[i:i + self.chunk])
                while True:
                    try:
                        r = await client.post("/api/v1/settlement-lists:import", content=body)
                        if r.status_code == 200:
                            self.summary.update({k: v for k, v in r.json().items()
                                                 if k in ("lines", "accepted", "duplicate", "rejected")})
                            break
                        why = f"{r.status_code} {r.text[:120]}"
                    except httpx.HTTPError as e:
                        why = type(e).__name__
                    self.retries += 1
                    say(f"[yellow]import chunk {k} failed ({why}): sending it again[/]")
                    await asyncio.sleep(1)
        self.done.set()


async def inject(system: System, kind: str, down: float) -> Callable[[], bool]:
    """Do the fault, bring the component back after `down` s; returns the 'is it back' check."""
    if kind in STAGES:
        svc = system.services[kind]
        svc.kill9()
        await asyncio.sleep(down)
        svc.start(wait=False)
        return svc.ready
    if kind == "broker":
        assert system.kafka is not None
        system.kafka.stop()
        await asyncio.sleep(down)
        system.kafka.spawn()
        kafka = system.kafka
        return lambda: kafka.started() and all(p.ready() for p in system.services.values())
    if kind == "pg":
        assert system.pg is not None
        await asyncio.to_thread(system.pg.crash)
        await asyncio.sleep(down)
        await asyncio.to_thread(system.pg.start)
        return lambda: all(p.ready() for p in system.services.values())
    raise ValueError(kind)


async def faults(system: System, region: Region, sampler: Sampler) -> None:
    args = system.args
    kinds: list[str] = []
    for k in args.fault.split(","):
        kinds += list(STAGES) if k == "services" else [k]
    for k in kinds:
        if k not in (*STAGES, "broker", "pg"):
            raise SystemExit(f"unknown fault {k!r}: services, {', '.join(STAGES)}, broker, pg")
        if (k == "broker" and system.kafka is None) or (k == "pg" and system.pg is None):
            raise SystemExit(f"the {k} fault needs the benchmark's own server (no --kafka / --pg)")
    chunk = args.chunk or max(10, int(args.rate * 2))
    importer = PacedImport(system, region, args.rate, chunk)
    await asyncio.sleep(2)
    t_start = sampler.now()
    say(f"importing {region.lists:,} lists at {args.rate:g}/s in chunks of {chunk}; faults: {', '.join(kinds)}")
    importing = asyncio.create_task(importer.run())
    await asyncio.sleep(args.warmup)
    # the backlog a paced import keeps in normal running (after its first seconds): the level
    # each fault's recovery is measured against
    steady = [b for s in sampler.samples if s["t"] >= t_start + min(5.0, args.warmup / 2)
              and (b := backlog(s)) is not None]
    level = max(max(steady, default=0) * 3 // 2, chunk + 20)
    results: list[FaultResult] = []
    for kind in kinds:
        down = args.down if args.down is not None else DEFAULT_DOWN["service" if kind in STAGES else kind]
        if importing.done():
            say(f"[yellow]the import has ended: {kind} hits a draining pipeline (use more --cases or a lower --rate)[/]")
        res = FaultResult(kind, sampler.now(), down, level=level)
        say(f"fault: {kind} (down {down:g} s)")
        is_back = await inject(system, kind, down)
        try:
            await wait_for(is_back, args.timeout, f"{kind} back")
            res.back_after = sampler.now() - res.at
            while True:
                s = sampler.last()
                if s["t"] > res.at + res.back_after and (b := backlog(s)) is not None and b <= level:
                    res.recovered_after = s["t"] - res.at
                    break
                if sampler.now() - res.at > args.timeout:
                    res.note = "backlog not back to its level in time"
                    break
                await asyncio.sleep(0.5)
        except TimeoutError as e:
            res.note = str(e)
        res.peak_backlog = max((b for s in sampler.samples if s["t"] >= res.at and (b := backlog(s)) is not None),
                               default=0)
        say(f"  {kind}: back after {res.back_after or float('nan'):.1f} s, recovered after "
            f"{res.recovered_after or float('nan'):.1f} s, peak backlog {res.peak_backlog:,} {res.note}")
        results.append(res)
        await asyncio.sleep(args.pause)
    await importing
    t_idle = await wait_idle(sampler, args.timeout, after=sampler.now())
    counted = await count_cases(system)

    print(f"\n== faults during a paced import: {region.lists:,} lists at {args.rate:g}/s "
          f"(chunks of {chunk}), {len(region.hospitals)} hospitals")
    print(machine())
    print(f"import: {importer.summary['lines']:,} lines sent, {importer.summary['accepted']:,} accepted, "
          f"{importer.summary['duplicate']:,} duplicate (chunks sent again), {importer.summary['rejected']:,} "
          f"rejected by QC; {importer.retries} chunk requests failed and were sent again; pipeline idle "
          f"{t_idle - t_start:.0f} s after the import's start")
    print(f"\n{'fault':<9}{'at s':>6}{'down s':>7}{'back s':>7}{'recovered s':>12}{'peak backlog':>13}"
          f"{'level':>7}  by itself")
    for r in results:
        by_itself = "yes" if r.recovered_after is not None else f"NO: {r.note}"
        print(f"{r.kind:<9}{r.at - t_start:>6.0f}{r.down:>7.0f}"
              f"{(f'{r.back_after:.1f}' if r.back_after is not None else '-'):>7}"
              f"{(f'{r.recovered_after:.1f}' if r.recovered_after is not None else '-'):>12}"
              f"{r.peak_backlog:>13,}{r.level:>7,}  {by_itself}")
    print("(back: the component answers again — the killed service /readyz, the broker started and "
          "every service ready, the database accepting connections and every service ready; "
          "recovered: back, and the backlog (lags + outboxes + undecided lists) at its level before "
          "the fault; both from the fault; nothing is done by hand)")
    print_lag_table(sampler.samples, t_start, t_idle, rows=30)
    print()
    print_count(counted)


# --------------------------------------------------------------------------- main

SYSTEMS: list[System] = []


async def run(args: argparse.Namespace, root: Path) -> int:
    system = System(args, root)
    SYSTEMS.append(system)
    sampler: Sampler | None = None
    try:
        option = args.scheme_path or Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")) / "schemes" / "chs-drg-1.1"
        scheme_path, _sample = resolve_scheme(option, console)
        region = await asyncio.to_thread(make_region, scheme_path, args.cases, args.hospitals, args.seed,
                                         root / "region.jsonl")
        await system.start_servers()
        await system.start_services(scheme_path)
        await system.make_tokens(region.hospitals)
        await import_policies(system, region)
        sampler = Sampler(system)
        sampler.start()
        if args.latency:
            await latency(system, region, sampler)
        elif args.fault:
            await faults(system, region, sampler)
        elif args.drain:
            await drain(system, region, sampler)
        else:
            await throughput(system, region, sampler)
        if args.samples:
            args.samples.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in sampler.samples))
            say(f"samples written to {args.samples}")
        return 0
    finally:
        if sampler is not None:
            await sampler.stop()
        say("stopping the services and servers")
        await system.stop()


def replicas(value: str) -> dict[str, int]:
    out = {}
    for part in filter(None, value.split(",")):
        stage, _, n = part.partition("=")
        if stage not in STAGES or not n.isdigit() or not 1 <= int(n) <= 16:
            raise argparse.ArgumentTypeError(f"{part!r}: STAGE=N with a stage of {', '.join(STAGES)} and N 1-16")
        out[stage] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000, help="settlement lists to generate and import")
    p.add_argument("--hospitals", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scheme-path", type=Path, default=None,
                   help="one scheme folder (default: <shared>/schemes/chs-drg-1.1)")
    p.add_argument("--kafka", help="HOST:PORT of a broker to use (default: start one)")
    p.add_argument("--kafka-version", default="4.1.1", help="of the broker started here")
    p.add_argument("--pg", help="postgresql+asyncpg:// URL of a database to CREATE DATABASE from (default: start a cluster)")
    p.add_argument("--partitions", type=int, default=6, help="partitions per topic")
    p.add_argument("--latency", action="store_true", help="the single-list HTTP path latency instead")
    p.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[20, 50, 100],
                   help="--latency: requests per second, one run each")
    p.add_argument("--duration", type=float, default=20, help="--latency: seconds per rate")
    p.add_argument("--fault", help="comma list of faults during a paced import: services (each in turn), "
                                   "ingest, grouper, pricer, review, gateway, broker, pg")
    p.add_argument("--rate", type=float, default=40, help="--fault: lists per second imported")
    p.add_argument("--chunk", type=int, default=0, help="--fault: lists per import request (default 2 s of --rate)")
    p.add_argument("--down", type=float, default=None,
                   help="--fault: seconds a component stays down (default 2 for a service, 10 for the broker and PostgreSQL)")
    p.add_argument("--warmup", type=float, default=15, help="--fault: seconds of import before the first fault")
    p.add_argument("--pause", type=float, default=5, help="--fault: seconds between a recovery and the next fault")
    p.add_argument("--timeout", type=float, default=1800, help="seconds any wait may take")
    p.add_argument("--replicas", type=replicas, default={},
                   help="processes per stage, e.g. grouper=2,pricer=2 (one consumer group each; default 1)")
    p.add_argument("--drain", choices=DRAINABLE,
                   help="the stage's own rate on a backlog: 1 process, then --replicas of it")
    p.add_argument("--samples", type=Path, help="write every one-second sample here (JSON Lines)")
    p.add_argument("--pg-statements", type=int, default=0, metavar="N",
                   help="throughput: print PostgreSQL's N costliest statements of each database "
                        "(pg_stat_statements in the cluster started here), HOT updates and temporary files")
    p.add_argument("--keep", action="store_true", help="keep the run folder (server and service logs)")
    args = p.parse_args(argv)
    if args.drain and args.replicas.get(args.drain, 1) == 1:
        args.replicas[args.drain] = 2
    if args.latency and args.cases == 10_000:
        args.cases = sum(int(r * args.duration) for r in args.rates)

    root = Path(tempfile.mkdtemp(prefix="drgdip-bench-"))

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(run(args, root))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for system in SYSTEMS:  # nothing left running, whatever happened
            system.stop_processes()
        if args.keep:
            say(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
