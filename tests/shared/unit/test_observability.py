"""What the metrics say while the database is away: the outbox's last reading stays, marked
stale, and the age of its oldest event keeps growing (nothing can publish it meanwhile)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from shared.observability import OutboxReading, ServiceMetrics, age_seconds

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def test_the_age_of_the_oldest_event_keeps_growing_while_the_database_is_away() -> None:
    r = OutboxReading()
    r.observed(40, T0)
    assert (r.backlog, r.stale, r.age(T0 + timedelta(seconds=30))) == (40, False, 30.0)
    r.unreachable()
    assert r.stale and r.backlog == 40
    assert r.age(T0 + timedelta(minutes=10)) == 600.0
    assert r.age(T0 + timedelta(minutes=20)) == 1200.0
    r.observed(3, T0 + timedelta(minutes=19))  # back: the relay caught up with most of it
    assert (r.backlog, r.stale, r.age(T0 + timedelta(minutes=20))) == (3, False, 60.0)


def test_an_empty_outbox_has_no_age_down_or_up() -> None:
    r = OutboxReading()
    assert r.age(T0) == 0.0
    r.observed(5, T0)
    r.drained()
    r.unreachable()  # nothing can be written while the database is away: still nothing waits
    assert (r.backlog, r.age(T0 + timedelta(hours=1))) == (0, 0.0)


def test_a_stored_time_without_zone_is_utc_and_a_clock_behind_gives_no_negative_age() -> None:
    naive = datetime(2025, 3, 1, 8, 0)  # how SQLite hands back the stored UTC time
    assert age_seconds(naive, T0 + timedelta(seconds=5)) == 5.0
    assert age_seconds(T0 + timedelta(seconds=5), T0) == 0.0
    assert age_seconds(None, T0) == 0.0


def test_the_outbox_gauges_read_the_reading_when_scraped() -> None:
    registry = CollectorRegistry()
    m = ServiceMetrics.create("stage", registry)
    assert ServiceMetrics.create("stage", registry) is m
    m.outbox.observed(7, datetime.now(UTC) - timedelta(hours=1))
    m.outbox.unreachable()
    assert registry.get_sample_value("stage_outbox_backlog") == 7
    assert registry.get_sample_value("stage_outbox_oldest_age_seconds") >= 3600
    m.consumer_lag.labels("stage", "t", "0").set(4)
    assert registry.get_sample_value("drgdip_consumer_lag", {"group": "stage", "topic": "t", "partition": "0"}) == 4


def test_a_batch_observed_at_once_reads_as_observed_one_by_one() -> None:
    from shared.messaging import _observe_times

    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("t_seconds", "d", ["topic"], registry=one_by_one)
    h2 = Histogram("t_seconds", "d", ["topic"], registry=at_once)
    for amount, n in [(0.0004, 500), (0.02, 3), (1e9, 2), (0.25, 1)]:
        for _ in range(n):
            h1.labels("t").observe(amount)
        _observe_times(h2.labels("t"), amount, n)

    def samples(registry: CollectorRegistry) -> list[str]:
        return [s for s in generate_latest(registry).decode().splitlines() if "_created" not in s]

    assert samples(at_once) == samples(one_by_one)
    with pytest.raises(ValueError):  # as observe: the labelled parent is not observed
        _observe_times(h2, 1.0, 2)
