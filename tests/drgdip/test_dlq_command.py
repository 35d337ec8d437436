"""`drgdip dlq list|show|replay` on the real broker: counts by consumer and reason, ids without
payloads, and a replay that republishes each dead letter once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from drgdip.cli import app
from shared.bus import Record
from shared.bus.kafka import KafkaBus
from shared.bus.memory import MemoryBus
from shared.dlq import DeadLetters, DeadLetterWatch, dead_letter_topics
from shared.events import ALL_TOPICS, CASE_RECEIVED, DEAD_LETTER_SUFFIX, Envelope, dead_letter_topic

NAME = "张三丰"  # personal data in a payload: never printed


def _envelope(n: int) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), event_type=CASE_RECEIVED, occurred_at=datetime.now(UTC),
                    case_id=f"H1-{n}", correlation_id=f"c{n}", producer="ingest",
                    payload={"patient_name": NAME})


def _dead(topic: str, value: bytes, consumer: str, error: str, key: str = "k") -> Record:
    return Record(dead_letter_topic(topic), key, value, (
        ("error", error.encode()), ("source", f"{topic}/0/7".encode()), ("consumer", consumer.encode())))


def _cli(*args: str, kafka: str, namespace: str) -> str:
    result = CliRunner().invoke(app, ["dlq", *args, "--bus", f"kafka://{kafka}", "--namespace", namespace])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.kafka
def test_list_show_and_replay_once(kafka_bootstrap: str) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}."
    topic = ns + CASE_RECEIVED
    good = [_envelope(1), _envelope(2)]

    async def setup() -> None:
        bus = KafkaBus(kafka_bootstrap)
        await bus.start()
        try:
            await bus.ensure_topics([ns + t for t in ALL_TOPICS], 3)
            await bus.publish([
                _dead(topic, good[0].to_bytes(), "grouper", "invalid: patient_name: bad input_value='张三丰'"),
                _dead(topic, good[1].to_bytes(), "grouper", "failed 5 times: ValueError: no scheme"),
                _dead(topic, b"\xff not json", "gateway", "undecodable: ValueError: not JSON"),
            ])
        finally:
            await bus.stop()

    asyncio.run(setup())
    listed = _cli("list", kafka=kafka_bootstrap, namespace=ns)
    assert f"{topic}.dlq: 3 dead letters, 3 not replayed" in listed
    assert "grouper" in listed and "invalid" in listed and "failed 5 times" in listed and "undecodable" in listed

    shown = _cli("show", "--service", "grouper", kafka=kafka_bootstrap, namespace=ns)
    assert all(f"event={e.event_id} type=case-received case={e.case_id}" in shown for e in good)
    assert NAME not in shown and "gateway" not in shown

    replayed = _cli("replay", "--service", "grouper", kafka=kafka_bootstrap, namespace=ns)
    assert "2 dead letters of grouper replayed" in replayed
    again = _cli("replay", "--service", "grouper", kafka=kafka_bootstrap, namespace=ns)
    assert "0 dead letters of grouper replayed" in again
    assert "1 not replayed" in _cli("list", kafka=kafka_bootstrap, namespace=ns)

    async def check() -> None:
        bus = KafkaBus(kafka_bootstrap)
        await bus.start()
        letters = DeadLetters(f"kafka://{kafka_bootstrap}", ns)
        try:
            # the original topic got each replayed event once
            sub = bus.subscriber(ns + "reader", [topic])
            await sub.start()
            got: list = []
            for _ in range(40):
                got += await sub.fetch(timeout_ms=500)
                if len(got) >= 2:
                    break
            await sub.stop()
            assert sorted(Envelope.from_bytes(m.value).event_id for m in got) == sorted(e.event_id for e in good)
            assert await letters.pending_counts("grouper", [CASE_RECEIVED]) == {}
            assert await letters.pending_counts("gateway", [CASE_RECEIVED]) == {topic + ".dlq": 1}
        finally:
            await letters.close()
            await bus.stop()

    asyncio.run(check())


def test_the_commands_refuse_the_embedded_bus() -> None:
    result = CliRunner().invoke(app, ["dlq", "list", "--bus", "memory://"])
    assert result.exit_code == 2
    assert "dead letters are kept on Kafka" in result.output


async def test_the_watch_counts_a_services_pending_dead_letters_on_the_embedded_bus() -> None:
    from prometheus_client import CollectorRegistry

    from shared.observability import ServiceMetrics

    bus = MemoryBus()
    metrics = ServiceMetrics.create("dlqwatch", CollectorRegistry())
    await bus.publish([_dead(CASE_RECEIVED, _envelope(1).to_bytes(), "grouper", "invalid: x"),
                       _dead(CASE_RECEIVED, _envelope(2).to_bytes(), "review", "invalid: y")])
    watch = DeadLetterWatch(bus, "", [("grouper", [CASE_RECEIVED], metrics)])
    assert await watch.refresh() == {"case-received.dlq": 1}
    assert metrics.dlq_messages.labels("case-received.dlq")._value.get() == 1
    letters = DeadLetters(bus)
    assert await letters.replay(bus, "grouper") == {"case-received.dlq": 1}
    assert await watch.refresh() == {}
    assert [Envelope.from_bytes(m.value).case_id for m in bus.log(CASE_RECEIVED)] == ["H1-1"]


def test_the_dead_letter_topics_are_every_topic_a_stage_publishes_to() -> None:
    dlqs = sorted(t for t in ALL_TOPICS if t.endswith(DEAD_LETTER_SUFFIX))
    assert sorted(dead_letter_topics("")) == dlqs
    assert {"period-settled.dlq", "deduction-confirmed.dlq", "special-case-decided.dlq"} <= set(dlqs)
    result = CliRunner().invoke(app, ["dlq", "list", "--bus", "kafka://127.0.0.1:1", "--topic", "no-such-topic"])
    assert result.exit_code == 2
    assert "deduction-confirmed" in result.output and "special-case-decided" in result.output
