"""The embedded bus keeps the Kafka semantics the stages rely on, and drops what every group has
committed once enough of it has piled up (a long import must not keep every event in memory)."""

from __future__ import annotations

from shared.bus import Record
from shared.bus.memory import MemoryBus


def _records(topic: str, n: int, start: int = 0) -> list[Record]:
    return [Record(topic, f"k{i}", f"v{i}".encode()) for i in range(start, start + n)]


async def test_groups_read_independently_and_a_restarted_member_gets_the_uncommitted_again() -> None:
    bus = MemoryBus()
    a, b = bus.subscriber("a", ["t"]), bus.subscriber("b", ["t"])
    await a.start()
    await b.start()
    await bus.publish(_records("t", 5))
    first = await a.fetch(timeout_ms=10, max_records=3)
    assert [m.offset for m in first] == [0, 1, 2]
    await a.commit(first[:2])
    assert [m.offset for m in await b.fetch(timeout_ms=10, max_records=10)] == [0, 1, 2, 3, 4]
    await a.stop()
    again = bus.subscriber("a", ["t"])
    await again.start()
    assert [m.offset for m in await again.fetch(timeout_ms=10, max_records=10)] == [2, 3, 4]


async def test_messages_committed_by_every_group_are_dropped_past_the_retention() -> None:
    bus = MemoryBus(retain=10)
    fast, slow = bus.subscriber("fast", ["t"]), bus.subscriber("slow", ["t"])
    await fast.start()
    await slow.start()
    await bus.publish(_records("t", 25))
    await fast.commit(await fast.fetch(timeout_ms=10, max_records=25))
    assert len(bus.log("t")) == 25  # the slow group has not committed anything yet
    got = await slow.fetch(timeout_ms=10, max_records=12)
    await slow.commit(got)
    kept = bus.log("t")
    assert [m.offset for m in kept] == list(range(12, 25))  # offsets never change
    assert [m.value for m in await slow.fetch(timeout_ms=10, max_records=100)] == [
        f"v{i}".encode() for i in range(12, 25)]
    await bus.publish(_records("t", 3, start=25))
    assert [m.offset for m in await fast.fetch(timeout_ms=10, max_records=100)] == [25, 26, 27]
    # a group that subscribes later starts from the earliest message still kept
    late = bus.subscriber("late", ["t"])
    await late.start()
    assert (await late.fetch(timeout_ms=10, max_records=1))[0].offset == 12


async def test_a_topic_nobody_reads_keeps_everything() -> None:
    bus = MemoryBus(retain=1)
    await bus.publish(_records("t.dlq", 50))
    assert len(bus.log("t.dlq")) == 50


async def test_lag_counts_what_the_group_has_not_committed_even_after_retention() -> None:
    bus = MemoryBus(retain=5)
    sub = bus.subscriber("g", ["t", "u"])
    await sub.start()
    await bus.publish(_records("t", 12) + _records("u", 3))
    assert await sub.lag() == {("t", 0): 12, ("u", 0): 3}
    fetched = await sub.fetch(timeout_ms=10, max_records=10)
    assert await sub.lag() == {("t", 0): 12, ("u", 0): 3}  # fetched is not done
    await sub.commit(fetched)
    assert len(bus.log("t")) < 12  # dropped past the retention: the lag still counts from the end
    assert await sub.lag() == {("t", 0): 2, ("u", 0): 3}
    await sub.commit(await sub.fetch(timeout_ms=10, max_records=10))
    assert await sub.lag() == {("t", 0): 0, ("u", 0): 0}
    other = bus.subscriber("h", ["t"])  # a group that joins late has all that is kept to read
    await other.start()
    assert await other.lag() == {("t", 0): 12}


async def test_it_says_how_far_every_subscribed_group_has_committed() -> None:
    bus = MemoryBus(retain=2)
    assert not bus.durable
    await bus.publish(_records("t", 3))
    assert (bus.end("t"), bus.committed_by_all("t")) == (3, 3)  # nobody subscribed: nobody waits
    fast, slow = bus.subscriber("fast", ["t"]), bus.subscriber("slow", ["t"])
    await fast.start()
    await slow.start()
    assert bus.committed_by_all("t") == 0
    await fast.commit(await fast.fetch(timeout_ms=10, max_records=3))
    await slow.commit((await slow.fetch(timeout_ms=10, max_records=2))[:1])
    assert (bus.end("t"), bus.committed_by_all("t")) == (3, 1)
