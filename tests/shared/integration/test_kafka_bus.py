"""Smoke tests against the real Kafka broker started by scripts/test.sh.

The first group checks the broker/aiokafka combination itself (the features the platform relies
on); the second checks `shared.bus.kafka.KafkaBus`.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.bus.base import Message, Record
from shared.bus.kafka import KafkaBus
from shared.events import ALL_TOPICS

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _create_topic(bootstrap: str, name: str, partitions: int = 6) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        assert all(err[1] == 0 for err in resp.topic_errors), resp.topic_errors
    finally:
        await admin.close()


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    out = {}
    for t in described:
        assert t["error_code"] == 0, t
        out[t["topic"]] = len(t["partitions"])
    return out


def _consumer(bootstrap: str, *topics: str, **kw) -> AIOKafkaConsumer:
    kw.setdefault("auto_offset_reset", "earliest")
    kw.setdefault("enable_auto_commit", False)
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **kw)


async def _drain(consumer: AIOKafkaConsumer, want: int, *, settle_s: float = 0.0) -> list:
    """Records until `want` arrived (then `settle_s` more to catch extras) or the deadline."""
    got: list = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for recs in batches.values():
            got.extend(recs)
    end = time.monotonic() + settle_s
    while time.monotonic() < end:
        batches = await consumer.getmany(timeout_ms=200)
        for recs in batches.values():
            got.extend(recs)
    return got


async def _fetch_n(
    fetch: Callable[[], Awaitable[list[Message]]], want: int, *, settle_s: float = 0.0
) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        got.extend(await fetch())
    end = time.monotonic() + settle_s
    while time.monotonic() < end:
        got.extend(await fetch())
    return got


# ---------------------------------------------------------------------------------------------
# The broker + aiokafka features we depend on
# ---------------------------------------------------------------------------------------------


async def test_create_topics(kafka_bootstrap: str) -> None:
    topic = _name("smoke-create")
    await _create_topic(kafka_bootstrap, topic, partitions=6)
    assert await _partition_counts(kafka_bootstrap, [topic]) == {topic: 6}


async def test_idempotent_produce_keeps_order(kafka_bootstrap: str) -> None:
    topic = _name("smoke-idem")
    await _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=b"case-1", value=str(i).encode()) for i in range(200)
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len({m.partition for m in metas}) == 1  # one key, one partition
    offsets = [m.offset for m in metas]
    assert offsets == sorted(offsets) and len(set(offsets)) == 200

    consumer = _consumer(kafka_bootstrap, topic)
    await consumer.start()
    try:
        recs = await _drain(consumer, 200, settle_s=0.5)
    finally:
        await consumer.stop()
    assert [int(r.value) for r in recs] == list(range(200))  # exactly once, in order


async def test_group_commit_then_new_member_resumes(kafka_bootstrap: str) -> None:
    topic, group = _name("smoke-group"), _name("g")
    await _create_topic(kafka_bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, key=b"k", value=b"m%d" % i)
    finally:
        await producer.stop()

    first = _consumer(kafka_bootstrap, topic, group_id=group)
    await first.start()
    try:
        recs = await _drain(first, 10)
        assert [r.value for r in recs] == [b"m%d" % i for i in range(10)]
        tp = TopicPartition(topic, 0)
        await first.commit({tp: recs[5].offset + 1})  # m0..m5 done, m6.. not
        assert await first.committed(tp) == recs[5].offset + 1
    finally:
        await first.stop()

    second = _consumer(kafka_bootstrap, topic, group_id=group)
    await second.start()
    try:
        again = await _drain(second, 4, settle_s=0.5)
    finally:
        await second.stop()
    assert [r.value for r in again] == [b"m6", b"m7", b"m8", b"m9"]


async def test_transaction_with_offsets_read_committed(kafka_bootstrap: str) -> None:
    src, out, group = _name("smoke-tx-in"), _name("smoke-tx-out"), _name("g-tx")
    await _create_topic(kafka_bootstrap, src, partitions=1)
    await _create_topic(kafka_bootstrap, out, partitions=1)
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(src, value=b"in%d" % i)
    finally:
        await plain.stop()

    tp_in = TopicPartition(src, 0)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=_name("tx"), enable_idempotence=True
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(out, key=b"k", value=b"committed-1")
            await producer.send_offsets_to_transaction({tp_in: 1}, group)

        await producer.begin_transaction()
        await producer.send(out, key=b"k", value=b"aborted")
        await producer.send_offsets_to_transaction({tp_in: 2}, group)
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(out, key=b"k", value=b"committed-2")
    finally:
        await producer.stop()

    committed_reader = _consumer(kafka_bootstrap, out, isolation_level="read_committed")
    await committed_reader.start()
    try:
        seen = [r.value for r in await _drain(committed_reader, 2, settle_s=0.5)]
    finally:
        await committed_reader.stop()
    assert seen == [b"committed-1", b"committed-2"]

    raw_reader = _consumer(kafka_bootstrap, out, isolation_level="read_uncommitted")
    await raw_reader.start()
    try:
        raw = [r.value for r in await _drain(raw_reader, 3, settle_s=0.3)]
    finally:
        await raw_reader.stop()
    assert raw == [b"committed-1", b"aborted", b"committed-2"]

    # the offsets sent inside the committed txn landed for the group; the aborted ones did not
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert offsets[tp_in].offset == 1


# ---------------------------------------------------------------------------------------------
# KafkaBus
# ---------------------------------------------------------------------------------------------


async def test_bus_ensure_topics_creates_all_topics(kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_bootstrap)
    await bus.ensure_topics(ALL_TOPICS, 6)
    await bus.ensure_topics(ALL_TOPICS, 6)  # already there: a no-op, not an error
    counts = await _partition_counts(kafka_bootstrap, list(ALL_TOPICS))
    assert counts == {t: 6 for t in ALL_TOPICS}


async def test_bus_publish_fetch_commit_redelivers_uncommitted(kafka_bootstrap: str) -> None:
    topic, group = _name("bus"), _name("g-bus")
    bus = KafkaBus(kafka_bootstrap, client_id="smoke")
    await bus.ensure_topics([topic], 6)
    await bus.start()
    try:
        batch1 = [
            Record(topic, f"case-{i % 4}", b"one-%d" % i, (("h", b"v%d" % i),)) for i in range(8)
        ]
        await bus.publish(batch1)

        sub = bus.subscriber(group, [topic])
        await sub.start()
        try:
            got1 = await _fetch_n(lambda: sub.fetch(timeout_ms=500, max_records=50), 8)
            assert sorted(m.value for m in got1) == sorted(r.value for r in batch1)
            for m in got1:
                assert m.topic == topic and m.key is not None and m.key.startswith("case-")
                assert dict(m.headers)["h"] == b"v" + m.value.split(b"-")[1]
            by_partition: dict[int, list[int]] = {}
            for m in got1:
                by_partition.setdefault(m.partition, []).append(m.offset)
            assert all(offs == sorted(offs) for offs in by_partition.values())
            await sub.commit(got1)

            batch2 = [Record(topic, f"case-{i % 4}", b"two-%d" % i) for i in range(8)]
            await bus.publish(batch2)
            got2 = await _fetch_n(lambda: sub.fetch(timeout_ms=500, max_records=50), 8)
            assert sorted(m.value for m in got2) == sorted(r.value for r in batch2)
            # fetched but NOT committed: "crash" before the work was done
        finally:
            await sub.stop()

        again = bus.subscriber(group, [topic])
        await again.start()
        try:
            redelivered = await _fetch_n(
                lambda: again.fetch(timeout_ms=500, max_records=50), 8, settle_s=1.0
            )
            await again.commit(redelivered)
        finally:
            await again.stop()
        assert sorted(m.value for m in redelivered) == sorted(r.value for r in batch2)

        third = bus.subscriber(group, [topic])
        await third.start()
        try:
            nothing = await _fetch_n(lambda: third.fetch(timeout_ms=300), 0, settle_s=1.5)
        finally:
            await third.stop()
        assert nothing == []
    finally:
        await bus.stop()


async def test_bus_publish_empty_and_order_per_key(kafka_bootstrap: str) -> None:
    topic = _name("bus-order")
    bus = KafkaBus(kafka_bootstrap)
    await bus.ensure_topics([topic], 6)
    await bus.start()
    try:
        await bus.publish([])
        await bus.publish([Record(topic, "case-x", b"%d" % i) for i in range(50)])
        sub = bus.subscriber(_name("g-order"), [topic], instance_id=_name("member"))
        await sub.start()
        try:
            got = await _fetch_n(lambda: sub.fetch(max_records=20), 50)
        finally:
            await sub.stop()
        assert [int(m.value) for m in got] == list(range(50))
        assert {m.key for m in got} == {"case-x"}
    finally:
        await bus.stop()


async def test_bus_ping(kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_bootstrap)
    assert await bus.ping() is True  # not started: throwaway probe
    await bus.start()
    try:
        assert await bus.ping() is True  # started: the producer's connection
    finally:
        await bus.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_bus_ping_false_on_closed_port() -> None:
    bus = KafkaBus(f"127.0.0.1:{_closed_port()}")
    t0 = time.monotonic()
    assert await bus.ping() is False
    assert time.monotonic() - t0 < 5


async def test_bus_ping_false_on_silent_server() -> None:
    """A peer that accepts connections but never answers must not hang /readyz."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        bus = KafkaBus(f"127.0.0.1:{server.getsockname()[1]}")
        t0 = time.monotonic()
        assert await bus.ping() is False
        assert time.monotonic() - t0 < 5
    finally:
        server.close()


async def test_bus_commit_after_rebalance_does_not_raise(kafka_bootstrap: str) -> None:
    """A member that lost partitions to a rebalance commits without error (redelivery instead)."""
    topic, group = _name("bus-rebal"), _name("g-rebal")
    bus = KafkaBus(kafka_bootstrap)
    await bus.ensure_topics([topic], 2)
    await bus.start()
    first = bus.subscriber(group, [topic])
    second = bus.subscriber(group, [topic])
    try:
        records = [Record(topic, f"case-{i}", b"%d" % i) for i in range(40)]
        await bus.publish(records)
        await first.start()
        got_first = await _fetch_n(lambda: first.fetch(max_records=100), 40)
        assert {m.partition for m in got_first} == {0, 1}

        await second.start()  # joins: the group rebalances, `first` keeps one partition at most
        got_second = await _fetch_n(lambda: second.fetch(max_records=100), 1)
        assert got_second, "second member never got a partition"
        await first.commit(got_first)  # must log, not raise, for the partition it lost
        await second.commit(got_second)
    finally:
        await first.stop()
        await second.stop()
        await bus.stop()


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {(tp.topic, tp.partition): n for tp, n in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def _lag_once_assigned(sub, partitions: int) -> dict[tuple[str, int], int]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        lag = await sub.lag()
        if len(lag) == partitions:
            return lag
        await asyncio.sleep(0.1)
    raise AssertionError(f"the member never held {partitions} partitions: {lag}")


async def test_bus_lag_per_partition_until_committed(kafka_bootstrap: str) -> None:
    topic, group = _name("bus-lag"), _name("g-lag")
    bus = KafkaBus(kafka_bootstrap)
    await bus.ensure_topics([topic], 3)
    await bus.start()
    sub = bus.subscriber(group, [topic])
    try:
        await bus.publish([Record(topic, f"case-{i}", b"%d" % i) for i in range(60)])
        produced = await _end_offsets(kafka_bootstrap, topic, 3)
        assert sum(produced.values()) == 60 and all(produced.values())
        await sub.start()
        # a group that never committed: everything produced is lag, partition by partition
        assert await _lag_once_assigned(sub, 3) == produced

        got = await _fetch_n(lambda: sub.fetch(max_records=100), 60)
        assert await sub.lag() == produced  # fetched is not done until it is committed
        await sub.commit(got[:10])
        assert sum((await sub.lag()).values()) == 50
        await sub.commit(got)
        assert await sub.lag() == dict.fromkeys(produced, 0)

        await bus.publish([Record(topic, f"case-{i}", b"more") for i in range(7)])
        assert sum((await sub.lag()).values()) == 7
    finally:
        await sub.stop()

    again = bus.subscriber(group, [topic])  # a new member reads the group's commits
    await again.start()
    try:
        assert sum((await _lag_once_assigned(again, 3)).values()) == 7
    finally:
        await again.stop()
        await bus.stop()


def test_bus_objects_can_be_built_outside_an_event_loop() -> None:
    bus = KafkaBus("127.0.0.1:9")
    sub = bus.subscriber("g", ["t"], instance_id="i-1")
    assert sub is not None
