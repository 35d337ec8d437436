"""Metrics (Prometheus, `<service>_<thing>_total|_seconds` for a stage, `drgdip_<thing>` for the
process) and JSON logs with the correlation id.

Logs never carry patient identifiers: stages log ids (case, event, correlation), never payloads.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class OutboxReading:
    """What is known of one outbox: how many events wait in it and when the oldest was written.

    It is read from the database whenever the database answers and kept when it does not: no
    event can be published (nor written) while the database is away, so the oldest known event
    is still waiting and its age keeps growing; `stale` says the backlog is the last one read.
    """

    def __init__(self) -> None:
        self.backlog = 0
        self.oldest: datetime | None = None  # created_at of the oldest event waiting
        self.stale = False

    def observed(self, backlog: int, oldest: datetime | None) -> None:
        """The database answered: `backlog` events wait, the oldest written at `oldest`."""
        self.backlog, self.stale = backlog, False
        self.oldest = _aware(oldest) if backlog and oldest is not None else None

    def drained(self) -> None:
        """A relay found the outbox empty."""
        self.observed(0, None)

    def unreachable(self) -> None:
        """The database did not answer: keep what was last read, mark it stale."""
        self.stale = True

    def age(self, now: datetime) -> float:
        """Seconds the oldest waiting event has waited at `now` (0 when none waits)."""
        return age_seconds(self.oldest, now)


def age_seconds(since: datetime | None, now: datetime | None = None) -> float:
    """Seconds from `since` (a stored time; None: nothing waits, 0) to `now` (default: now)."""
    if since is None:
        return 0.0
    return max(((now or datetime.now(UTC)) - _aware(since)).total_seconds(), 0.0)


def _aware(at: datetime) -> datetime:
    # SQLite hands back the stored UTC time without its zone
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@dataclass(frozen=True)
class ProcessMetrics:
    """What one process reports whatever stages it runs (`drgdip_…`)."""

    consumer_lag: Gauge
    database_up: Gauge
    ready: Gauge
    readiness_changes: Counter
    http_requests: Counter
    http_duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> ProcessMetrics:
        existing = _PROCESS.get(id(registry))
        if existing:
            return existing
        m = _PROCESS[id(registry)] = cls(
            consumer_lag=Gauge("drgdip_consumer_lag", "events in a partition the consumer group has "
                               "not committed yet (end offset minus committed offset)",
                               ["group", "topic", "partition"], registry=registry),
            database_up=Gauge("drgdip_database_up", "1 when the last probe reached the database, 0 "
                              "when it did not (outbox readings are then the last ones read)",
                              registry=registry),
            ready=Gauge("drgdip_ready", "1 when the last readiness check passed", registry=registry),
            readiness_changes=Counter("drgdip_readiness_changes", "times readiness went from ready "
                                      "to not ready or back", registry=registry),
            http_requests=Counter("drgdip_http_requests", "HTTP requests answered",
                                  ["method", "route", "status"], registry=registry),
            http_duration=Histogram("drgdip_http_request_duration_seconds", "time to answer an "
                                    "HTTP request", ["method", "route"], registry=registry),
        )
        return m


_PROCESS: dict[int, ProcessMetrics] = {}


@dataclass(frozen=True)
class ServiceMetrics:
    """What one stage reports (`<service>_…`); `consumer_lag` is the process's, labelled by group."""

    consumed: Counter
    published: Counter
    failed: Counter
    dead_lettered: Counter
    processing: Histogram
    outbox: OutboxReading
    last_flush: Gauge
    consumer_lag: Gauge
    batch_fallbacks: Counter
    dlq_messages: Gauge

    @classmethod
    def create(cls, service: str, registry: CollectorRegistry = REGISTRY) -> ServiceMetrics:
        existing = _METRICS.get((service, id(registry)))
        if existing:
            return existing
        outbox = OutboxReading()
        backlog = Gauge(f"{service}_outbox_backlog", "events written but not yet published "
                        "(the last count read while the database is away)", registry=registry)
        backlog.set_function(lambda: outbox.backlog)
        age = Gauge(f"{service}_outbox_oldest_age_seconds", "how long the oldest event not yet "
                    "published has waited (keeps growing while the database is away)", registry=registry)
        age.set_function(lambda: outbox.age(datetime.now(UTC)))
        m = cls(
            consumed=Counter(f"{service}_events_consumed", "events applied", ["topic"], registry=registry),
            published=Counter(f"{service}_events_published", "events published", ["topic"], registry=registry),
            failed=Counter(f"{service}_events_failed", "failed attempts to apply an event", ["topic"], registry=registry),
            dead_lettered=Counter(f"{service}_events_dead_lettered", "events sent to the dead-letter topic", ["topic"], registry=registry),
            processing=Histogram(f"{service}_processing_seconds", "time to apply one event", ["topic"], registry=registry),
            outbox=outbox,
            last_flush=Gauge(f"{service}_outbox_last_flush_timestamp_seconds", "when the outbox "
                             "relay last completed a pass (Unix time)", registry=registry),
            consumer_lag=ProcessMetrics.create(registry).consumer_lag,
            batch_fallbacks=Counter(f"{service}_batch_fallbacks", "batches that failed by content and were applied one event at a time", ["topic"], registry=registry),
            dlq_messages=Gauge(f"{service}_dlq_messages", "dead letters of this service not yet replayed, per source topic", ["topic"], registry=registry),
        )
        _METRICS[(service, id(registry))] = m
        return m


_METRICS: dict[tuple[str, int], ServiceMetrics] = {}


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,  # carries correlation_id, case_id
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
