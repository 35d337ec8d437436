"""Ingest's database fast paths give what the straightforward code gave.

- SQLite numbers a batch of received lists in order (`repository.store_raw`), and the latest
  version of a list is found by its case id even when two keys share one
  (`repository.latest_versions`).
- Deciding lists this process just stored locks them by id without reading their bytes back
  (`repository.lock_pending_ids`): a list decided meanwhile is still not decided again.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from paths import SHARED
from sqlalchemy import select

from services.ingest import repository
from services.ingest.domain.intake import Received, Stored
from shared.events import CASE_RECEIVED

HSA = SHARED / "testdata" / "hsa"
EXAMPLES = {name: json.loads((HSA / f"{name}.json").read_text(encoding="utf-8")) for name in ("4101-01",)}


@pytest.fixture
async def runtime(tmp_path: Path) -> Any:
    from drgdip.stages import build_runtime

    rt = build_runtime("ingest", db=f"sqlite+aiosqlite:///{tmp_path / 'i.db'}", log_level="WARNING")
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def published(rt: Any, n: int) -> None:
    """Wait for the relay to publish `n` events (stopping while it relays can hang the runtime)."""
    for _ in range(200):
        if len(rt.bus.log(CASE_RECEIVED)) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} events not published")


async def test_store_returns_the_ids_in_the_order_of_the_lists(runtime: Any) -> None:
    engine = runtime.engine
    items = [Received("native", f'{{"n": {i}}}'.encode(), correlation_id=f"c{i}") for i in range(1200)]
    async with engine.begin() as conn:
        first = await repository.store_raw(conn, items[:5])
    async with engine.begin() as conn:
        ids = await repository.store_raw(conn, items[5:])  # more than one INSERT page
    assert first + ids == sorted(first + ids)
    async with engine.connect() as conn:
        stored = dict((await conn.execute(select(repository.verbatim.c.id, repository.verbatim.c.raw))).all())
    assert [stored[i] for i in first + ids] == [i.raw for i in items]


async def test_keys_sharing_a_case_id_keep_their_own_versions(runtime: Any) -> None:
    intake = runtime.stages[0].service

    async def receive(items: list[Received]) -> list[Any]:
        return await intake.receive(items)
    doc = EXAMPLES["4101-01"]["input"]

    def variant(hospital: str, setl_id: str, note: str) -> Received:
        d = copy.deepcopy(doc)
        d["setlinfo"] |= {"fixmedins_code": hospital, "setl_id": setl_id, "psn_name": note}
        return Received("native", orjson.dumps(d))

    # both keys have the case id "A-B-C"
    first = await receive([variant("A-B", "C", "1"), variant("A", "B-C", "1")])
    assert [(o.status, o.case_id, o.list_version) for o in first] == [("accepted", "A-B-C", 1)] * 2
    again = await receive([variant("A", "B-C", "2"), variant("A-B", "C", "1")])
    assert [(o.status, o.list_version) for o in again] == [("accepted", 2), ("duplicate", 1)]
    # the case id's newest version is now the other key's: "A-B"+"C" still finds its own
    third = await receive([variant("A-B", "C", "1"), variant("A-B", "C", "3")])
    assert [(o.status, o.list_version) for o in third] == [("duplicate", 1), ("accepted", 2)]
    await published(runtime, 4)


async def test_a_list_decided_meanwhile_is_not_decided_again(runtime: Any) -> None:
    intake = runtime.stages[0].service
    raw = orjson.dumps(EXAMPLES["4101-01"]["input"])
    async with runtime.engine.begin() as conn:
        ids = await repository.store_raw(conn, [Received("native", raw, correlation_id=f"c{i}") for i in range(3)])
    rows = [Stored(i, "native", raw, None, f"c{n}") for n, i in enumerate(ids)]
    first = await intake.finish(rows[1:2])  # the middle one decided (by the sweep, say) first
    assert [(o.status, o.list_version) for o in first] == [("accepted", 1)]
    outcomes = await intake.finish(rows)
    assert [(o.raw_id, o.status, o.list_version) for o in outcomes] == [
        (ids[0], "duplicate", 1), (ids[1], "accepted", 1), (ids[2], "duplicate", 1)]
    async with runtime.engine.connect() as conn:
        assert await repository.count_lists(conn) == 1
    await published(runtime, 1)
