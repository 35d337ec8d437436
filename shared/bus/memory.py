"""In-process bus for the embedded mode: one append-only log per topic, offsets per group.

It keeps Kafka's semantics that the stages rely on (consumer groups, commit after work,
redelivery of uncommitted messages to a restarted subscriber) without a broker. Like a
broker's retention, messages every subscribed group has committed are dropped once there are
`retain` of them, so a long import does not keep every event in memory; a topic nobody
subscribes to (the dead letters) keeps everything.

The log dies with the process (`durable` is False): the outbox relay keeps each row until every
group has committed the message it became, and publishes what is left again after a restart.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from shared.bus.base import Bus, Message, Record, Subscriber


class MemoryBus(Bus):
    durable = False

    def __init__(self, retain: int = 1_000) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._base: dict[str, int] = defaultdict(int)  # offset of the first message kept
        self._committed: dict[tuple[str, str], int] = defaultdict(int)  # (group, topic) -> next
        self._groups: dict[str, set[str]] = defaultdict(set)  # topic -> groups that subscribed
        # topic -> one event per subscriber reading it, so no wake-up is lost (and a publish
        # wakes only the subscribers of its topics)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.retain = retain

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def publish(self, records: Sequence[Record]) -> None:
        logs, base = self._logs, self._base
        for topic, key, value, headers in records:
            log = logs[topic]
            log.append(Message(topic, 0, base[topic] + len(log), key, value, headers))
        for topic in {r.topic for r in records}:
            for w in self._waiters.get(topic, ()):
                w.set()

    def subscriber(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> Subscriber:
        return _MemorySubscriber(self, group_id, tuple(topics))

    def unconsumed(self) -> int:
        """Messages a subscribed group has not committed yet (0: every group has caught up with
        every topic it reads; what retention dropped counts as committed)."""
        return sum(self._base[t] + len(self._logs[t]) - self._committed[(g, t)]
                   for t, groups in self._groups.items() for g in groups)

    def log(self, topic: str) -> list[Message]:
        """What `topic` still holds (for tests and the dead-letter view)."""
        return list(self._logs[topic])

    def _read(self, topic: str, position: int, n: int) -> list[Message]:
        start = max(position - self._base[topic], 0)
        return self._logs[topic][start:start + n]

    def end(self, topic: str) -> int:
        return self._base[topic] + len(self._logs[topic])

    def committed(self, group: str, topic: str) -> int:
        """The offset after the last message of `topic` that `group` has committed."""
        return self._committed[(group, topic)]

    def committed_by_all(self, topic: str) -> int:
        groups = self._groups.get(topic)
        return min(self._committed[(g, topic)] for g in groups) if groups else self.end(topic)

    def _retain(self, topic: str) -> None:
        done = min(self._committed[(g, topic)] for g in self._groups[topic]) - self._base[topic]
        if done >= self.retain:
            del self._logs[topic][:done]
            self._base[topic] += done


class _MemorySubscriber(Subscriber):
    def __init__(self, bus: MemoryBus, group: str, topics: tuple[str, ...]) -> None:
        self._bus, self._group, self._topics = bus, group, topics
        self._position: dict[str, int] = {}
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # A (re)started member resumes from the group's committed offsets, like Kafka.
        self._position = {t: self._bus._committed[(self._group, t)] for t in self._topics}
        for t in self._topics:
            self._bus._groups[t].add(self._group)
            self._bus._waiters[t].add(self._changed)

    async def stop(self) -> None:
        for t in self._topics:
            self._bus._waiters[t].discard(self._changed)

    async def fetch(self, timeout_ms: int = 500, max_records: int = 200) -> list[Message]:
        batch = self._take(max_records)
        if batch:
            return batch
        self._changed.clear()
        batch = self._take(max_records)  # anything published between the two looks
        if batch:
            return batch
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_ms / 1000)
        except TimeoutError:
            return []
        return self._take(max_records)

    def _take(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for t in self._topics:
            chunk = self._bus._read(t, self._position[t], max_records - len(out))
            if chunk:
                self._position[t] = chunk[-1].offset + 1
            out.extend(chunk)
            if len(out) >= max_records:
                break
        return out

    async def lag(self) -> dict[tuple[str, int], int]:
        # one partition per topic, and every member of a group reads all of it
        return {(t, 0): self._bus.end(t) - self._bus._committed[(self._group, t)] for t in self._topics}

    async def commit(self, messages: Sequence[Message]) -> None:
        upto: dict[str, int] = {}  # topic -> the offset after the last message committed
        for m in messages:
            if upto.get(m.topic, 0) <= m.offset:
                upto[m.topic] = m.offset + 1
        committed = self._bus._committed
        for t, end in upto.items():
            key = (self._group, t)
            committed[key] = max(committed[key], end)
            self._bus._retain(t)
