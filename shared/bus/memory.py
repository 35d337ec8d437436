"""In-process bus for the embedded mode: one append-only log per topic, offsets per group.

It keeps Kafka's semantics that the stages rely on (consumer groups, commit after work,
redelivery of uncommitted messages to a restarted subscriber) without a broker.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from shared.bus.base import Bus, Message, Record, Subscriber


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = defaultdict(int)  # (group, topic) -> next
        self._waiters: set[asyncio.Event] = set()  # one per subscriber, so no wake-up is lost

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def publish(self, records: Sequence[Record]) -> None:
        for r in records:
            log = self._logs[r.topic]
            log.append(Message(r.topic, 0, len(log), r.key, r.value, r.headers))
        if records:
            for w in self._waiters:
                w.set()

    def subscriber(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> Subscriber:
        return _MemorySubscriber(self, group_id, tuple(topics))

    def log(self, topic: str) -> list[Message]:
        """Everything ever published to `topic` (for tests and the dead-letter view)."""
        return list(self._logs[topic])


class _MemorySubscriber(Subscriber):
    def __init__(self, bus: MemoryBus, group: str, topics: tuple[str, ...]) -> None:
        self._bus, self._group, self._topics = bus, group, topics
        self._position: dict[str, int] = {}
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # A (re)started member resumes from the group's committed offsets, like Kafka.
        self._position = {t: self._bus._committed[(self._group, t)] for t in self._topics}
        self._bus._waiters.add(self._changed)

    async def stop(self) -> None:
        self._bus._waiters.discard(self._changed)

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
            log = self._bus._logs[t]
            start = self._position[t]
            chunk = log[start : start + max_records - len(out)]
            self._position[t] = start + len(chunk)
            out.extend(chunk)
            if len(out) >= max_records:
                break
        return out

    async def commit(self, messages: Sequence[Message]) -> None:
        for m in messages:
            key = (self._group, m.topic)
            self._bus._committed[key] = max(self._bus._committed[key], m.offset + 1)
