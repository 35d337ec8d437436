"""The bureau's side of the gateway: policies (admin only, audited) and settlement statements."""

from __future__ import annotations

from pathlib import Path

import orjson
from helpers import SHARED, api_client, count, policy

from drgdip.stages import build_runtime


async def test_policies_are_managed_by_the_bureau_admin_and_audited(tmp_path: Path) -> None:
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        doc = policy()
        async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst, \
                await api_client(rt, "hospital", "H1") as hospital:
            assert (await analyst.post("/api/v1/policies", json=doc)).status_code == 403
            assert (await hospital.get("/api/v1/policies")).status_code == 403
            r = await admin.post("/api/v1/policies", json=doc)
            assert r.status_code == 201, r.text
            bad = await admin.post("/api/v1/policies", content=orjson.dumps(doc | {"method": "guess"}))
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "method"
            listed = (await analyst.get("/api/v1/policies")).json()
            assert doc["policy_id"] in orjson.dumps(listed).decode()
            assert (await hospital.get("/api/v1/statements", params={"hospital": "H2"})).status_code == 403
            assert (await hospital.get("/api/v1/statements", params={"hospital": "H1"})).status_code == 200
        assert await count(rt.engine, "pricer_policy_audit") == 1
        assert await count(rt.engine, "pricer_policy_audit", "who LIKE 'token:%'") == 1
    finally:
        await rt.stop()
