"""DIP in the running pipeline (embedded mode): the payment method switches from DRG to DIP.

A DIP catalogue is built from a small synthetic history and registered with the grouper for
the region from 2024-07-01; the pricer has a DRG policy up to 2024-06-30 and a DIP policy
(with the same catalogue) from 2024-07-01. Cases discharged before the switch are priced by
DRG, those after by DIP, each with exactly one DIP group and its trace stored.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import HOSPITALS, SHARED, api_client, case_id, count, lists, policy, wait_until
from sqlalchemy import select

from drgdip.dip_cli import dip_case_from_list
from drgdip.generate import generate_region
from drgdip.stages import build_runtime
from services.grouper import repository as grouper_repository
from services.grouper.domain import catalogue_registration
from services.grouper.repository import results as grouper_results
from services.pricer.domain.dip_catalogue import build_catalogue
from services.pricer.domain.policy import PolicyConflict, PolicyError
from services.pricer.handlers import (
    import_dip_policy,
    run_annual_clearing,
    run_monthly_presettlement,
)
from services.pricer.repository import results
from shared.dip import Catalogue

REGION = "350500"
SWITCH = date(2024, 7, 1)


async def in_transaction(engine: Any, work: Any, *args: Any, **kwargs: Any) -> Any:
    """`work(conn, ...)` in one transaction, as a command runs it."""
    async with engine.begin() as conn:
        return await work(conn, *args, **kwargs)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """A 2024 catalogue from 2021–2023 synthetic history of the region."""
    history = [dip_case_from_list(doc, region=REGION) for doc in generate_region(
        SHARED / "schemes" / "chs-drg-1.1", hospitals=4, years=3, cases=300, seed=11, end_year=2023)]
    return build_catalogue(history, region=REGION, year=2024, min_cases=3)


def dip_policy(version: int = 1) -> dict[str, Any]:
    return {"format": "drgdip.dip-policy/1", "policy_id": "dip-2024", "version": version,
            "region": REGION, "valid_from": SWITCH.isoformat(),
            "hospitals": {"level_coefficients": {"1": "0.9", "2": "1.0", "3": "1.1"},
                          "levels": {h: 3 for h in HOSPITALS}},
            "points": {"provisional_point_value": "80"}}


def with_money(sl: dict[str, Any]) -> dict[str, Any]:
    sl["setlinfo"].update(medfee_sumamt="8000.00", psn_selfpay="1000.00", psn_ownpay="0.00")
    return sl


@pytest.fixture
async def pipeline(tmp_path: Path, catalogue: Catalogue):  # type: ignore[no-untyped-def]
    drg = policy() | {"valid_to": "2024-06-30"}
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(drg))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                       schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")
    await rt.start()
    client = await api_client(rt)
    document = orjson.dumps(catalogue.to_document())
    async with rt.engine.begin() as conn:
        await grouper_repository.register_catalogue(conn, catalogue_registration(document, REGION, SWITCH, None))
    await in_transaction(rt.engine, import_dip_policy, orjson.dumps(dip_policy()), document)
    try:
        yield rt, client
    finally:
        await client.aclose()
        await rt.stop()


async def test_cases_switch_from_drg_to_dip_on_the_date(pipeline, catalogue: Catalogue) -> None:  # type: ignore[no-untyped-def]
    rt, client = pipeline
    batch = [with_money(sl) for sl in lists(24)]
    after = {case_id(sl) for sl in batch if sl["setlinfo"]["dscg_time"][:10] >= SWITCH.isoformat()}
    before = {case_id(sl) for sl in batch} - after
    assert before and after
    for sl in batch:
        r = await client.post("/api/v1/settlement-lists", json=sl)
        assert r.status_code == 202, r.text

    async def priced() -> bool:
        return await count(rt.engine, "pricer_results") == len(batch)

    await wait_until(priced, 60, f"{len(batch)} priced cases")
    async with rt.engine.connect() as conn:
        rows = {r.case_id: r for r in (await conn.execute(select(results))).all()}
        grouped = {r.case_id: r for r in (await conn.execute(select(grouper_results))).all()}

    for cid in before:
        row = rows[cid]
        assert (row.method, row.policy_id, row.dip_group) == ("drg", "test-2024", None)
        assert orjson.loads(row.breakdown)["method"] != "dip"
        assert grouped[cid].dip_group is None  # no catalogue in force yet
        assert "dip" not in orjson.loads(grouped[cid].trace or "{}")
    for cid in after:
        row, g = rows[cid], grouped[cid]
        b = orjson.loads(row.breakdown)
        assert (row.method, row.policy_id, row.policy_version) == ("dip", "dip-2024", 1)
        assert b["method"] == "dip" and b["dip"]["catalogue_id"] == catalogue.catalogue_id
        # exactly one DIP group, the grouper's, and it is in the catalogue
        assert row.dip_group == g.dip_group == b["dip"]["group"] == b["drg"]
        trace = orjson.loads(g.trace)["dip"]
        assert trace["group"] == g.dip_group and trace["trace"]
        assert row.status == "PRICED" and row.case_type is not None  # every hospital has a level
        assert row.payment == Decimal(b["dip"]["payment"]) > 0
        assert row.fund_payment == row.payment - Decimal("1000.00")

    # the event carries the DIP breakdown to the read model
    cid = sorted(after)[0]

    async def reached_gateway() -> bool:
        return (await client.get(f"/api/v1/cases/{cid}")).json().get("priced") is not None

    await wait_until(reached_gateway, 30, "the DIP-priced case in the read model")
    priced_view = (await client.get(f"/api/v1/cases/{cid}")).json()["priced"]
    assert priced_view["breakdown"]["method"] == "dip"
    assert priced_view["breakdown"]["dip"]["group"] == rows[cid].dip_group

    # DIP cases settle under the DIP policy id through the shared settlement engine
    month = min(str(rows[c].discharge_date)[:7] for c in after)
    statements = await in_transaction(rt.engine, run_monthly_presettlement, "dip-2024", month)
    assert statements and all(s.policy_id == "dip-2024" for s in statements)
    clearing = await in_transaction(rt.engine, run_annual_clearing, "dip-2024", "2024", Decimal("1000000.00"))
    assert clearing.statements()


async def test_dip_policy_versions_are_immutable(tmp_path: Path, catalogue: Catalogue) -> None:
    from shared import migrate
    from shared.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        await migrate.upgrade(engine, "pricer")
        document = orjson.dumps(catalogue.to_document())
        await in_transaction(engine, import_dip_policy, orjson.dumps(dip_policy()), document)
        await in_transaction(engine, import_dip_policy, orjson.dumps(dip_policy()), document)  # same: no-op
        assert await count(engine, "pricer_dip_policies") == 1
        changed = dip_policy() | {"notes": "changed"}
        with pytest.raises(PolicyConflict):
            await in_transaction(engine, import_dip_policy, orjson.dumps(changed), document)
        with pytest.raises(PolicyError, match="points"):
            await in_transaction(engine, import_dip_policy, orjson.dumps(dip_policy(2) | {"points": 3}), document)
    finally:
        await engine.dispose()


def test_the_cli_imports_a_catalogue_and_a_dip_policy(tmp_path: Path, catalogue: Catalogue) -> None:
    import asyncio

    from typer.testing import CliRunner

    from drgdip.cli import app
    from services.gateway.repository import audit
    from shared.db import create_engine

    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    cat_file, pol_file = tmp_path / "catalogue.json", tmp_path / "dip-policy.json"
    cat_file.write_bytes(orjson.dumps(catalogue.to_document()))
    pol_file.write_bytes(orjson.dumps(dip_policy()))
    runner = CliRunner()
    r = runner.invoke(app, ["dip", "import-catalogue", str(cat_file), "--region", REGION,
                            "--from", "2024-07-01", "--db", db])
    assert r.exit_code == 0, r.output
    assert "registered DIP catalogue" in r.output
    r = runner.invoke(app, ["dip", "import-policy", str(pol_file), "--catalogue", str(cat_file), "--db", db])
    assert r.exit_code == 0, r.output
    assert "imported DIP policy dip-2024 v1" in r.output
    r = runner.invoke(app, ["dip", "import-policy", str(cat_file), "--catalogue", str(cat_file), "--db", db])
    assert r.exit_code == 2  # a catalogue is not a policy

    async def counts() -> tuple[int, int, list[tuple[str, str]]]:
        engine = create_engine(db)
        try:
            async with engine.connect() as conn:
                audited = [tuple(r) for r in await conn.execute(
                    select(audit.c.action, audit.c.subject).order_by(audit.c.id))]
            return (await count(engine, "grouper_dip_catalogues"),
                    await count(engine, "pricer_dip_policies"), audited)
        finally:
            await engine.dispose()

    # each change audited once, as its route does (the refused import left no row)
    assert asyncio.run(counts()) == (1, 1, [("dip-catalogue.registered", f"{REGION} 2024-07-01.."),
                                            ("dip-policy.imported", "dip-2024 v1")])


async def test_draft_check_gives_the_dip_group_the_pipeline_assigns(pipeline) -> None:  # type: ignore[no-untyped-def]
    from services.grouper.repository import cases as grouper_cases

    rt, client = pipeline
    sl = next(with_money(x) for x in lists(24) if x["setlinfo"]["dscg_time"][:10] >= SWITCH.isoformat())
    assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

    async def grouped() -> bool:
        return await count(rt.engine, "grouper_results") == 1

    await wait_until(grouped, 30, "the case grouped")
    async with rt.engine.connect() as conn:
        stored = (await conn.execute(select(grouper_results))).one()
        received = orjson.loads((await conn.execute(select(grouper_cases.c.payload))).scalar_one())
    draft = {k: received[k] for k in ("sex", "age", "diagnoses", "procedures")}
    day = received["facts"]["discharge_date"]
    r = await client.post("/api/v1/group", json=draft | {"region": REGION, "discharge_date": day})
    assert r.status_code == 200, r.text
    assert r.json()["drg"] == stored.drg
    assert r.json()["dip"]["group"] == stored.dip_group and r.json()["dip"]["trace"]
    before = await client.post("/api/v1/group", json=draft | {"region": REGION, "discharge_date": "2024-06-30"})
    assert before.status_code == 200 and "dip" not in before.json()  # no catalogue in force yet
