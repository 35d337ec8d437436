"""Metrics (Prometheus, `<service>_<thing>_total|_seconds`) and JSON logs with the correlation id.

Logs never carry patient identifiers: stages log ids (case, event, correlation), never payloads.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class ServiceMetrics:
    consumed: Counter
    published: Counter
    failed: Counter
    dead_lettered: Counter
    processing: Histogram
    outbox_backlog: Gauge
    batch_fallbacks: Counter
    dlq_messages: Gauge

    @classmethod
    def create(cls, service: str, registry: CollectorRegistry = REGISTRY) -> ServiceMetrics:
        existing = _METRICS.get((service, id(registry)))
        if existing:
            return existing
        m = cls(
            consumed=Counter(f"{service}_events_consumed", "events applied", ["topic"], registry=registry),
            published=Counter(f"{service}_events_published", "events published", ["topic"], registry=registry),
            failed=Counter(f"{service}_events_failed", "failed attempts to apply an event", ["topic"], registry=registry),
            dead_lettered=Counter(f"{service}_events_dead_lettered", "events sent to the dead-letter topic", ["topic"], registry=registry),
            processing=Histogram(f"{service}_processing_seconds", "time to apply one event", ["topic"], registry=registry),
            outbox_backlog=Gauge(f"{service}_outbox_backlog", "events written but not yet published", registry=registry),
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
