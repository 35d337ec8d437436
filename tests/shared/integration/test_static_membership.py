"""Static group membership (DRGDIP_INSTANCE_ID) with a stage that consumes two subscriptions in
one consumer group (review: case-priced and period-settled): each subscription is a member of
its own, so neither fences the other out and both keep consuming."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from helpers import wait_until

from drgdip.stages import build_runtime

pytestmark = pytest.mark.kafka


async def test_two_subscriptions_of_a_stage_are_two_static_members(kafka_bootstrap: str, tmp_path: Path) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}."
    rt = build_runtime("review", db=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", bus=f"kafka://{kafka_bootstrap}",
                       namespace=ns, instance_id="review-0", log_level="WARNING", partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await rt.start()
    await admin.start()
    try:
        async def members() -> list[tuple[str, bool]]:
            out: list[tuple[str, bool]] = []
            try:
                described = await admin.describe_consumer_groups([ns + "review"])
            except KafkaError:  # a broker just started: the group's coordinator is not there yet
                return out
            for resp in described:
                for g in resp.groups:  # (error, group, state, protocol type, protocol, members, …)
                    if g[2] == "Stable":
                        out += [(m[1], bool(m[-1])) for m in g[5]]
            return out

        async def both_joined() -> bool:
            got = await members()
            return len(got) == 2 and all(assigned for _m, assigned in got)

        await wait_until(both_joined, 60, "both review subscriptions in the group")
        await asyncio.sleep(4)  # a fenced member would be out of the group (and its task ended) by now
        assert len(await members()) == 2
        assert (await rt.health())["stopped_tasks"] == []
    finally:
        await admin.close()
        await rt.stop()
