"""The bus interface every stage talks to.

Delivery is at-least-once: a subscriber commits offsets only after the database transaction
that applied the messages, so a crash re-delivers and the inbox makes the redelivery harmless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, NamedTuple


# Record and Message are named tuples: immutable like a frozen dataclass, and made about three
# times as fast (the bus makes one of each per event).
class Record(NamedTuple):
    """A message to publish. `key` is the case id, so one case's events stay in order."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Message(NamedTuple):
    """A consumed message with its position, so it can be committed."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Subscriber(ABC):
    """One member of a consumer group."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def fetch(self, timeout_ms: int = 500, max_records: int = 200) -> list[Message]:
        """Next batch of messages (possibly empty), in partition order."""

    @abstractmethod
    async def commit(self, messages: Sequence[Message]) -> None:
        """Mark every message up to and including these as done for the group."""

    @abstractmethod
    async def lag(self) -> dict[tuple[str, int], int]:
        """For each partition this member holds, `(topic, partition) -> n`: the messages in it
        the group has not committed yet (end offset minus committed offset; all of them when
        the group never committed). Messages fetched but not committed count: they are not done.
        """


class Bus(ABC):
    durable: ClassVar[bool] = True
    """True: a published message outlives this process (a broker keeps it). False: it lives in
    this process's memory only, so a publisher must keep its own copy until every group reading
    the topic has committed it (`end`, `committed_by_all`), and publish that copy again after a
    restart."""

    def end(self, topic: str) -> int:
        """(A bus that is not durable) the offset the next message published to `topic` gets."""
        raise NotImplementedError

    def committed_by_all(self, topic: str) -> int:
        """(A bus that is not durable) the offset below which every group that subscribed to
        `topic` has committed (`end(topic)` when none subscribed: nobody waits for it)."""
        raise NotImplementedError

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(self, records: Sequence[Record]) -> None:
        """Publish and wait until the broker has acknowledged every record."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the bus is reachable (used by /readyz)."""

    @abstractmethod
    def subscriber(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> Subscriber: ...

    async def ensure_topics(self, topics: Sequence[str], partitions: int, replication: int = 1) -> None:
        """Create the topics if missing (a no-op where topics need no creation)."""
        return None


def bus_from_url(url: str, *, client_id: str = "drgdip", kafka: dict[str, int] | None = None) -> Bus:
    """`memory://` for the embedded mode, `kafka://host:port[,host:port]` for the real broker
    (`kafka`: the client settings KafkaBus takes, e.g. batch_bytes, fetch_min_bytes)."""
    if url.startswith("memory://"):
        from shared.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith("kafka://"):
        from shared.bus.kafka import KafkaBus

        return KafkaBus(url.removeprefix("kafka://"), client_id=client_id, **(kafka or {}))
    raise ValueError(f"unknown bus url {url!r}: expected memory:// or kafka://HOST:PORT")
