"""Regrouping stored cases under another scheme: new grouping versions, re-priced, a migration table."""

from __future__ import annotations

from pathlib import Path

import orjson
from helpers import SHARED, api_client, case_id, count, lists, policy, wait_until
from sqlalchemy import MetaData

from drgdip.stages import build_runtime
from services.grouper.domain import load_scheme
from services.grouper.handlers import regroup
from shared.messaging import Outbox


async def test_regroup_with_quanzhou_publishes_new_versions_and_reports_moves(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))

    def runtime():  # type: ignore[no-untyped-def]
        return build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}",
                             schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")

    batch = lists(150, seed=3)
    rt = runtime()
    await rt.start()
    async with await api_client(rt) as c:
        for sl in batch:
            assert (await c.post("/api/v1/settlement-lists", json=sl)).status_code == 202

        async def reviewed() -> bool:
            return (await c.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == 150

        await wait_until(reviewed, 120, "150 reviewed")

    async def published() -> bool:  # a row leaves the outbox once every group has consumed it
        return await count(rt.engine, "grouper_outbox") == 0

    await wait_until(published, 60, "the grouper's outbox consumed")
    await rt.stop()

    quanzhou = load_scheme(SHARED / "schemes" / "quanzhou-2023")
    seen: list[tuple[int, int]] = []
    rt = runtime()  # the tables exist; regroup works on the stored cases
    migration = await regroup(rt.engine, Outbox("grouper", MetaData()), quanzhou, batch=60,
                              progress=lambda done, total: seen.append((done, total)))
    assert migration.cases == 150 and seen[-1] == (150, 150) and len(seen) == 3
    expected_moves = sum(1 for sl in batch if _drg(quanzhou, sl) != _drg(load_scheme(SHARED / "schemes" / "chs-drg-1.1"), sl))
    assert migration.moved == expected_moves
    assert await count(rt.engine, "grouper_results") == 300
    assert await count(rt.engine, "grouper_outbox") == 150

    await rt.start()  # the relay publishes the new versions; the pricer prices them again
    try:
        async def repriced() -> bool:
            return await count(rt.engine, "pricer_results") == 300

        await wait_until(repriced, 120, "300 priced results")
        async with await api_client(rt) as c:
            case = (await c.get(f"/api/v1/cases/{case_id(batch[0])}")).json()
        assert case["grouped"]["scheme_id"] == "quanzhou-2023"
        assert case["grouped"]["grouping_version"] == 2
    finally:
        await rt.stop()


def _drg(scheme, sl: dict) -> str:  # type: ignore[no-untyped-def]
    from services.ingest.domain import intake

    fields = intake.evaluate("native", sl, caller_hospital=None, dictionaries=None).fields  # type: ignore[union-attr]
    return scheme.group({"sex": fields.sex, "age": fields.age, "age_days": fields.age_days,
                         "birth_weight": fields.birth_weight, "diagnoses": list(fields.diagnoses),
                         "procedures": list(fields.procedures)}).drg
