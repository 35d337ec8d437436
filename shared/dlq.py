"""Dead letters as work: what each `<topic>.dlq` holds, and replaying it once.

A consumer that cannot apply an event by its content sends it to `<topic>.dlq` with the headers
`error`, `source` (topic/partition/offset) and `consumer` (the service). Once the cause is fixed
the events are replayed: republished to their original topic, where every consumer group gets
them again (the ones that applied them already skip them by their inbox).

What was replayed is kept on the bus itself: each service has a consumer group
`<namespace><service>-dlq-replay` on the dead-letter topics whose committed offset marks the
prefix already replayed, so a second replay republishes nothing. A service's pending dead
letters are the ones it dead-lettered (`consumer` header) past that offset; they are counted for
its `/readyz` and its `dlq_messages` metric (`DeadLetterWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from shared.bus import Bus, Message, Record
from shared.bus.memory import MemoryBus
from shared.events import DEAD_LETTER_SUFFIX, SOURCE_TOPICS, Envelope, dead_letter_topic
from shared.messaging import redact_reason
from shared.observability import ServiceMetrics

log = structlog.get_logger("drgdip.dlq")

READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, with what may be printed of it: ids and headers, never the payload."""

    topic: str  # the dead-letter topic
    partition: int
    offset: int
    consumer: str
    source: str
    error: str
    event_id: str | None
    event_type: str | None
    case_id: str | None
    replayed: bool
    message: Message

    @property
    def reason(self) -> str:
        """The kind of failure: `undecodable`, `invalid`, `failed N times`."""
        return self.error.split(":", 1)[0] or "unknown"

    @property
    def original_topic(self) -> str:
        return self.topic.removesuffix(DEAD_LETTER_SUFFIX)


def replay_group(namespace: str, service: str) -> str:
    return f"{namespace}{service}-dlq-replay"


def dead_letter_topics(namespace: str, topics: Sequence[str] = ()) -> list[str]:
    """The dead-letter topics of these source topics (all the pipeline's when none is given)."""
    return [namespace + dead_letter_topic(t.removesuffix(DEAD_LETTER_SUFFIX)) for t in (topics or SOURCE_TOPICS)]


class _Log(ABC):
    """The few log operations dead letters need (what a consumer group does not offer)."""

    @abstractmethod
    async def spans(self, topic: str) -> dict[int, tuple[int, int]]:
        """partition -> (first offset kept, next offset)."""

    @abstractmethod
    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """partition -> the group's committed offset (absent: none)."""

    @abstractmethod
    async def read(self, topic: str, ranges: dict[int, tuple[int, int]]) -> list[Message]:
        """The messages of each partition in [start, end)."""

    @abstractmethod
    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None: ...

    async def close(self) -> None:
        return None


class _MemoryLog(_Log):
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    async def spans(self, topic: str) -> dict[int, tuple[int, int]]:
        base = self.bus._base[topic]
        return {0: (base, base + len(self.bus._logs[topic]))}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        key = (group, topic)
        return {0: self.bus._committed[key]} if key in self.bus._committed else {}

    async def read(self, topic: str, ranges: dict[int, tuple[int, int]]) -> list[Message]:
        start, end = ranges.get(0, (0, 0))
        return [m for m in self.bus.log(topic) if start <= m.offset < end]

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        if 0 in offsets:
            self.bus._committed[(group, topic)] = max(self.bus._committed[(group, topic)], offsets[0])


class _KafkaLog(_Log):
    """Reads by explicit assignment (joins no group); commits and reads a group's offsets
    without joining it either, as an admin tool does."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumers: dict[str | None, object] = {}

    async def _consumer(self, group: str | None):  # type: ignore[no-untyped-def]
        from aiokafka import AIOKafkaConsumer

        if group not in self._consumers:
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, client_id="drgdip-dlq",
                                 enable_auto_commit=False, auto_offset_reset="earliest")
            await c.start()
            self._consumers[group] = c
        return self._consumers[group]

    async def _partitions(self, topic: str) -> list:  # type: ignore[type-arg]
        from aiokafka import TopicPartition

        c = await self._consumer(None)
        cluster = await c._client.fetch_all_metadata()  # the consumer's cached view lacks topics it reads none of
        return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]

    async def spans(self, topic: str) -> dict[int, tuple[int, int]]:
        tps = await self._partitions(topic)
        if not tps:
            return {}
        c = await self._consumer(None)
        begins, ends = await c.beginning_offsets(tps), await c.end_offsets(tps)
        return {tp.partition: (begins[tp], ends[tp]) for tp in tps}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        c = await self._consumer(group)
        out = {}
        for tp in await self._partitions(topic):
            offset = await c.committed(tp)
            if offset is not None:
                out[tp.partition] = offset
        return out

    async def read(self, topic: str, ranges: dict[int, tuple[int, int]]) -> list[Message]:
        from aiokafka import TopicPartition

        todo = {TopicPartition(topic, p): r for p, r in ranges.items() if r[0] < r[1]}
        if not todo:
            return []
        c = await self._consumer(None)
        c.assign(list(todo))
        for tp, (start, _end) in todo.items():
            c.seek(tp, start)
        out: list[Message] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: the broker did not deliver its messages in time")
            for tp, records in (await c.getmany(*todo, timeout_ms=1000)).items():
                end = todo[tp][1] if tp in todo else -1
                for r in records:
                    if r.offset < end:
                        out.append(Message(r.topic, r.partition, r.offset,
                                           r.key.decode() if r.key is not None else None,
                                           r.value or b"", tuple((k, bytes(v or b"")) for k, v in r.headers or ())))
                if records and records[-1].offset + 1 >= end:
                    todo.pop(tp, None)
        c.assign([])
        return sorted(out, key=lambda m: (m.partition, m.offset))

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        if offsets:
            c = await self._consumer(group)
            tps = {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()}
            c.assign(list(tps))  # aiokafka commits only for assigned partitions (joins no group)
            await c.commit(tps)

    async def close(self) -> None:
        for c in self._consumers.values():
            with contextlib.suppress(Exception):
                await c.stop()  # type: ignore[attr-defined]
        self._consumers.clear()


class DeadLetters:
    """The dead letters of one environment (`namespace`) on one bus."""

    def __init__(self, bus: Bus | str, namespace: str = "") -> None:
        """`bus`: the runtime's bus, or a `kafka://HOST:PORT` URL (commands)."""
        self.namespace = namespace
        if isinstance(bus, MemoryBus):
            self._log: _Log = _MemoryLog(bus)
        elif isinstance(bus, str) and bus.startswith("kafka://"):
            self._log = _KafkaLog(bus.removeprefix("kafka://"))
        elif hasattr(bus, "bootstrap"):  # the Kafka bus of a runtime
            self._log = _KafkaLog(bus.bootstrap)
        else:
            raise ValueError(f"dead letters are kept on the bus: {bus!r} keeps none between processes")

    async def close(self) -> None:
        await self._log.close()

    async def letters(self, topics: Sequence[str] = (), service: str | None = None, *,
                      replayed: bool = True) -> list[DeadLetter]:
        """The dead letters of these source topics (all when none), of one consumer or all;
        `replayed=False`: only the ones not replayed yet."""
        out: list[DeadLetter] = []
        for topic in dead_letter_topics(self.namespace, topics):
            spans = await self._log.spans(topic)
            messages = await self._log.read(topic, spans)
            marks: dict[str, dict[int, int]] = {}
            for m in messages:
                letter_consumer = _header(m, "consumer")
                if service is not None and letter_consumer != service:
                    continue
                if letter_consumer not in marks:
                    marks[letter_consumer] = await self._log.committed(
                        replay_group(self.namespace, letter_consumer), topic)
                done = m.offset < marks[letter_consumer].get(m.partition, 0)
                if replayed or not done:
                    out.append(_letter(topic, m, done))
        return out

    async def pending_counts(self, service: str, topics: Sequence[str]) -> dict[str, int]:
        """Per dead-letter topic, how many of `service`'s dead letters are not replayed yet
        (topics without any are left out)."""
        counts: dict[str, int] = {}
        for topic in dead_letter_topics(self.namespace, topics):
            spans = await self._log.spans(topic)
            if not any(end > begin for begin, end in spans.values()):
                continue
            marks = await self._log.committed(replay_group(self.namespace, service), topic)
            ranges = {p: (max(begin, marks.get(p, 0)), end) for p, (begin, end) in spans.items()}
            n = sum(1 for m in await self._log.read(topic, ranges) if _header(m, "consumer") == service)
            if n:
                counts[topic] = n
        return counts

    async def replay(self, bus: Bus, service: str, topics: Sequence[str] = ()) -> dict[str, int]:
        """Republish `service`'s dead letters not replayed yet to their original topics, then
        mark them replayed; per dead-letter topic, how many were republished. A second replay
        republishes nothing (after a crash between the two steps the same events go out again,
        which the consumers' inboxes skip)."""
        group = replay_group(self.namespace, service)
        done: dict[str, int] = {}
        for topic in dead_letter_topics(self.namespace, topics):
            spans = await self._log.spans(topic)
            marks = await self._log.committed(group, topic)
            ranges = {p: (max(begin, marks.get(p, 0)), end) for p, (begin, end) in spans.items()}
            letters = [_letter(topic, m, False) for m in await self._log.read(topic, ranges)
                       if _header(m, "consumer") == service]
            await bus.publish([Record(d.original_topic, d.message.key or "", d.message.value,
                                      (("replayed-from", f"{topic}/{d.partition}/{d.offset}".encode()),))
                               for d in letters])
            await self._log.commit(group, topic, {p: end for p, (_b, end) in spans.items()
                                                  if end > marks.get(p, 0)})
            if letters:
                done[topic] = len(letters)
        return done


def _header(m: Message, name: str) -> str:
    return next((v.decode("utf-8", "replace") for k, v in m.headers if k == name), "")


def _letter(topic: str, m: Message, replayed: bool) -> DeadLetter:
    try:
        env = Envelope.from_bytes(m.value)
        ids: tuple[str | None, str | None, str | None] = (env.event_id, env.event_type, env.case_id)
    except Exception:  # undecodable: that is why it is here
        ids = (None, None, None)
    return DeadLetter(topic, m.partition, m.offset, _header(m, "consumer"), _header(m, "source"),
                      redact_reason(_header(m, "error")), *ids, replayed=replayed, message=m)


class DeadLetterWatch:
    """Keeps a process's count of its services' pending dead letters (for `/readyz` and the
    `dlq_messages` metric), refreshed every `interval_s`: reading the bus never delays a probe."""

    def __init__(self, bus: Bus, namespace: str,
                 services: Sequence[tuple[str, Sequence[str], ServiceMetrics]], interval_s: float = 30) -> None:
        """`services`: (service, the source topics it consumes, its metrics)."""
        self.bus, self.namespace, self.services, self.interval = bus, namespace, services, interval_s
        self.counts: dict[str, int] = {}  # dead-letter topic -> pending dead letters

    async def refresh(self) -> dict[str, int]:
        letters = DeadLetters(self.bus, self.namespace)
        try:
            counts: dict[str, int] = {}
            for service, topics, metrics in self.services:
                mine = await letters.pending_counts(service, topics)
                for topic in dead_letter_topics(self.namespace, topics):
                    metrics.dlq_messages.labels(topic).set(mine.get(topic, 0))
                for topic, n in mine.items():
                    counts[topic] = counts.get(topic, 0) + n
        finally:
            await letters.close()
        self.counts = counts
        return counts

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the bus is away: keep the last counts, try again
                log.warning("counting dead letters failed", error=type(e).__name__, message=str(e)[:200])
            await asyncio.sleep(self.interval)
