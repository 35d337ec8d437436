"""The Kafka bus (aiokafka): idempotent producer, manual-commit consumer groups.

Delivery is at-least-once. A subscriber commits explicit offsets (max offset + 1 per
partition) only after the caller's database transaction; after a rebalance a commit may be
refused, which is logged and harmless: the messages are redelivered and the inbox drops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    TopicAlreadyExistsError,
    for_code,
)

from shared.bus.base import Bus, Message, Record, Subscriber

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0
# Batching, the broker's and the clients' CPU per event: a relay flush of a few hundred events is a
# few produce requests (not one per 16 KiB batch), and a consumer asks the broker for what
# gathered over up to 100 ms rather than for every few events. `linger_ms` only waits when a
# batch is not full: a relay flush sends at once what it has.
PRODUCER_BATCH_BYTES = 256 * 1024
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 100


def _headers(headers: Sequence[tuple[str, bytes]] | None) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, bytes(v) if v is not None else b"") for k, v in headers or ())


class KafkaBus(Bus):
    """`bootstrap` is "host:port[,host:port]"."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "drgdip",
        linger_ms: int = 5,
        request_timeout_ms: int = 30000,
        batch_bytes: int = PRODUCER_BATCH_BYTES,
        fetch_min_bytes: int = FETCH_MIN_BYTES,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._linger_ms = linger_ms
        self._batch_bytes = batch_bytes
        self._fetch = {"fetch_min_bytes": fetch_min_bytes, "fetch_max_wait_ms": fetch_max_wait_ms}
        self._request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self._linger_ms,
            max_batch_size=self._batch_bytes,
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # -- producing -------------------------------------------------------------------------

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self._producer is None:
            raise RuntimeError("KafkaBus.publish() before start()")
        producer = self._producer
        # send() only appends to the accumulator and returns a delivery future; gather them
        # so the whole batch is in flight at once (no task per record).
        futures: list[asyncio.Future] = []
        for r in records:
            fut = await producer.send(
                r.topic,
                value=r.value,
                key=r.key.encode("utf-8") if r.key is not None else None,
                headers=list(r.headers) or None,
            )
            futures.append(fut)
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [res for res in results if isinstance(res, BaseException)]
        if errors:
            raise errors[0]

    # -- health ----------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the broker answers a metadata request within ~2 s. Never hangs."""
        try:
            if self._producer is not None:
                md = await asyncio.wait_for(
                    self._producer.client.fetch_all_metadata(), PING_TIMEOUT_S
                )
                return bool(md.brokers())
            return await asyncio.wait_for(self._probe(), PING_TIMEOUT_S)
        except Exception:  # timeout, connection refused, broker error: "not ready"
            log.debug("kafka ping failed", exc_info=True)
            return False

    async def _probe(self) -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-ping",
            request_timeout_ms=int(PING_TIMEOUT_S * 1000),
        )
        try:
            await client.bootstrap()
            return True
        finally:
            await client.close()

    # -- admin -----------------------------------------------------------------------------

    async def ensure_topics(self, topics: Sequence[str], partitions: int, replication: int = 1) -> None:
        if not topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self._request_timeout_ms,
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in dict.fromkeys(topics) if t not in existing]
            if not missing:
                return
            try:
                response = await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing]
                )
            except TopicAlreadyExistsError:
                return
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                if code == 0:
                    continue
                err = for_code(code)
                if err is TopicAlreadyExistsError:
                    continue
                message = topic_error[2] if len(topic_error) > 2 else None
                raise err(f"creating topic {topic!r}: {message or err.__name__}")
        finally:
            await admin.close()

    # -- consuming -------------------------------------------------------------------------

    def subscriber(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> Subscriber:
        return KafkaSubscriber(
            self.bootstrap,
            group_id,
            tuple(topics),
            instance_id=instance_id,
            client_id=self.client_id,
            **self._fetch,
        )


class KafkaSubscriber(Subscriber):
    """One member of a consumer group; offsets are committed explicitly by the caller."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: tuple[str, ...],
        *,
        instance_id: str | None = None,
        client_id: str = "drgdip",
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
        max_poll_interval_ms: int = 300000,
        fetch_min_bytes: int = FETCH_MIN_BYTES,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    ) -> None:
        self.group_id = group_id
        self.topics = topics
        # The consumer is created in start(): aiokafka binds it to the running event loop.
        self._config = dict(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            group_id=group_id,
            group_instance_id=instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._consumer_obj: AIOKafkaConsumer | None = None
        # the group's committed offset of each partition held, as far as this member knows it:
        # read once from the coordinator, then kept by commit(); forgotten at every rebalance
        self._committed: dict[TopicPartition, int] = {}

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._consumer_obj is None:
            raise RuntimeError("KafkaSubscriber used before start()")
        return self._consumer_obj

    async def start(self) -> None:
        if self._consumer_obj is not None:
            return
        consumer = AIOKafkaConsumer(**self._config)
        consumer.subscribe(self.topics, listener=_ForgetCommitted(self._committed))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer_obj = consumer

    async def stop(self) -> None:
        consumer, self._consumer_obj = self._consumer_obj, None
        if consumer is not None:
            await consumer.stop()

    async def fetch(self, timeout_ms: int = 500, max_records: int = 200) -> list[Message]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: list[Message] = []
        for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
            for rec in batches[tp]:  # already in offset order within the partition
                out.append(
                    Message(
                        topic=rec.topic,
                        partition=rec.partition,
                        offset=rec.offset,
                        key=rec.key.decode("utf-8") if rec.key is not None else None,
                        value=rec.value if rec.value is not None else b"",
                        headers=_headers(rec.headers),
                    )
                )
        return out

    async def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, -1), m.offset + 1)
        assigned = self._consumer.assignment()
        lost = [tp for tp in offsets if tp not in assigned]
        if lost:
            # Revoked by a rebalance: another member now owns them and will redeliver.
            log.warning(
                "not committing %d partition(s) no longer assigned to group %s: %s",
                len(lost),
                self.group_id,
                lost,
            )
            offsets = {tp: off for tp, off in offsets.items() if tp in assigned}
            if not offsets:
                return
        try:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "offset commit refused for group %s after a rebalance (%s); "
                "messages will be redelivered and deduplicated by the inbox",
                self.group_id,
                exc,
            )

    async def lag(self) -> dict[tuple[str, int], int]:
        consumer = self._consumer
        held = sorted(consumer.assignment())
        if not held:
            return {}
        committed: dict[TopicPartition, int] = {}
        never: list[TopicPartition] = []
        for tp in held:
            known = self._committed.get(tp)
            if known is None:
                known = await consumer.committed(tp)
                if known is not None:
                    known = self._committed.setdefault(tp, known)  # a commit meanwhile wins
            if known is None:
                never.append(tp)
            else:
                committed[tp] = known
        if never:  # auto_offset_reset="earliest": the group will read all that is kept
            committed.update(await consumer.beginning_offsets(never))
        ends = await consumer.end_offsets(held)
        return {(tp.topic, tp.partition): max(ends[tp] - committed[tp], 0) for tp in held}


class _ForgetCommitted(ConsumerRebalanceListener):  # type: ignore[misc]
    """After a rebalance another member may have committed the partitions this one gets."""

    def __init__(self, committed: dict[TopicPartition, int]) -> None:
        self._committed = committed

    async def on_partitions_revoked(self, revoked: object) -> None:
        self._committed.clear()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self._committed.clear()
