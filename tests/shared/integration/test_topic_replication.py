"""A topic a service creates because it is missing gets DRGDIP_TOPIC_REPLICATION replicas."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.errors import InvalidReplicationFactorError

from shared.bus.kafka import KafkaBus

pytestmark = pytest.mark.kafka


async def test_topics_are_created_with_the_replication_asked_for(kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_bootstrap)
    topic = f"t{uuid.uuid4().hex[:8]}.replicated"
    # the test broker is a single node: two replicas cannot be placed, and the broker says so
    with pytest.raises(InvalidReplicationFactorError):
        await bus.ensure_topics([topic], 2, replication=2)
    await bus.ensure_topics([topic], 2, replication=1)
    await bus.ensure_topics([topic], 2, replication=2)  # there now: left as it is

