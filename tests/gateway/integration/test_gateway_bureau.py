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
        assert await count(rt.engine, "gateway_audit", "action = 'policy.imported' AND actor LIKE 'token:%'") == 1
    finally:
        await rt.stop()


async def test_dip_catalogues_and_policies_are_registered_through_the_gateway(tmp_path: Path) -> None:
    from drgdip.dip_cli import dip_case_from_list
    from drgdip.generate import generate_region
    from services.pricer.domain.dip_catalogue import build_catalogue

    history = [dip_case_from_list(doc, region="350500") for doc in generate_region(
        SHARED / "schemes" / "chs-drg-1.1", hospitals=3, cases=200, seed=5, end_year=2023)]
    catalogue = build_catalogue(history, region="350500", year=2024, min_cases=3).to_document()
    dip_policy = {"format": "drgdip.dip-policy/1", "policy_id": "dip-2024", "version": 1, "region": "350500",
                  "valid_from": "2024-01-01", "points": {"provisional_point_value": "80"}}
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        where = {"region": "350500", "valid_from": "2024-01-01"}
        async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst:
            assert (await analyst.post("/api/v1/dip/catalogues", params=where, json=catalogue)).status_code == 403
            r = await admin.post("/api/v1/dip/catalogues", params=where, json=catalogue)
            assert r.status_code == 201 and r.json()["groups"] > 0, r.text
            bad = await admin.post("/api/v1/dip/catalogues", params=where, json={"not": "a catalogue"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "body"
            r = await admin.post("/api/v1/dip/policies", json={"policy": dip_policy, "catalogue": catalogue})
            assert r.status_code == 201, r.text
            wrong = await admin.post("/api/v1/dip/policies", json={"policy": dip_policy | {"points": 3},
                                                                   "catalogue": catalogue})
            assert wrong.status_code == 422 and wrong.json()["error"]["field"].startswith("points")
        assert await count(rt.engine, "grouper_dip_catalogues") == 1
        assert await count(rt.engine, "pricer_policy_audit", "who LIKE 'token:%'") == 1
        # the gateway's own audit: only what took effect
        assert await count(rt.engine, "gateway_audit", "action = 'dip-catalogue.registered' "
                                                       "AND subject = '350500 2024-01-01..'") == 1
        assert await count(rt.engine, "gateway_audit", "action = 'dip-policy.imported' "
                                                       "AND subject = 'dip-2024 v1'") == 1
    finally:
        await rt.stop()
