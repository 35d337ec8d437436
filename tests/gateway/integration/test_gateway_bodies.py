"""The gateway reads a request body only up to its bound (413 beyond, nothing stored), and
streams bulk imports through without holding them (ingest bounds each line)."""

from __future__ import annotations

from pathlib import Path

import orjson
from helpers import SHARED, api_client, count, lists, wait_until

from drgdip.stages import build_runtime

LIMIT = 64 << 10  # the smallest bound the setting allows


async def test_a_body_over_the_bound_is_413_and_an_import_streams_past_it(tmp_path: Path) -> None:
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       max_body_bytes=LIMIT, log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as client:
            big = lists(1)[0] | {"note": "x" * LIMIT}
            r = await client.post("/api/v1/settlement-lists", content=orjson.dumps(big))
            assert r.status_code == 413, r.text
            assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("TOO_LARGE", "body")
            r = await client.post("/api/v1/policies", content=b"{" + b" " * LIMIT + b"}")
            assert r.status_code == 413, r.text
            assert await count(rt.engine, "ingest_raw") == 0  # nothing of it stored

            batch = lists(200)
            body = b"\n".join(orjson.dumps(sl) for sl in batch)
            assert len(body) > LIMIT
            r = await client.post("/api/v1/settlement-lists:import", content=body)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 200

            async def all_stored() -> bool:
                return await count(rt.engine, "ingest_lists") == 200

            await wait_until(all_stored, 30, "200 stored lists")
    finally:
        await rt.stop()
