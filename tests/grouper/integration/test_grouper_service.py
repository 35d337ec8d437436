"""The grouper service: draft checks, the scheme in force per region and date, regroup from the CLI."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import httpx
import orjson
from helpers import (
    SHARED,
    api_client,
    count,
    lists,
    national_list,
    policy,
    simple_lists,
    wait_until,
)
from typer.testing import CliRunner

from drgdip.cli import app
from drgdip.stages import build_runtime
from services.grouper.domain import engine_input, load_scheme
from services.grouper.repository import latest_received

runner = CliRunner()


async def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    """Run the CLI in a thread: it runs its own event loop, as it does from a shell."""
    return await asyncio.to_thread(runner.invoke, app, args)


def _runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))
    return build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}",
                         schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")


def _case_with_cc() -> dict:
    """A reference case whose DRG is the 'with CC' split (…3)."""
    for line in (SHARED / "testdata" / "chs-drg-1.1-cases.jsonl").open("rb"):
        c = orjson.loads(line)
        if c["expected"]["status"] == "SUCCESS" and c["expected"]["drg"].endswith("3"):
            return c
    raise AssertionError("no with-CC case in the reference data")


async def test_draft_check_groups_without_storing_and_explains(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    await rt.start()
    try:
        c = _case_with_cc()
        async with await api_client(rt) as client:
            r = await client.post("/api/v1/group", json={k: c[k] for k in (
                "sex", "age", "age_days", "birth_weight", "diagnoses", "procedures")})
            assert r.status_code == 200, r.text
            body = r.json()
            assert {k: body[k] for k in ("mdc", "adrg", "drg", "status")} == c["expected"]
            assert body["scheme_id"] == "chs-drg-1.1"
            assert any("CC" in line for line in body["explanation"])
            bad = await client.post("/api/v1/group", json={"diagnoses": "I21.000", "scheme": "nope"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "diagnoses"
            unknown = await client.post("/api/v1/group", json={"diagnoses": [], "scheme": "nope"})
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "UNKNOWN_SCHEME"
        assert await count(rt.engine, "grouper_results") == 0
    finally:
        await rt.stop()


async def test_cases_are_grouped_by_the_scheme_in_force_for_their_region_and_discharge_date(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    for folder, start, end in (("chs-drg-1.1", "2020-01-01", "2023-12-31"), ("quanzhou-2023", "2024-01-01", None)):
        args = ["scheme", "import", str(SHARED / "schemes" / folder), "--region", "350500",
                "--from", start, "--db", db] + (["--to", end] if end else [])
        result = await invoke(args)
        assert result.exit_code == 0, result.output
    rt = _runtime(tmp_path)
    await rt.start()
    try:
        base = simple_lists(1)[0] | {"region": "350500", "los": 4}
        before = base | {"setl_id": "OLD", "admission_date": "2023-06-01", "discharge_date": "2023-06-05"}
        after = base | {"setl_id": "NEW", "admission_date": "2024-06-01", "discharge_date": "2024-06-05"}
        other = base | {"setl_id": "ELSEWHERE", "region": "110000", "admission_date": "2024-06-01",
                        "discharge_date": "2024-06-05"}
        async with await api_client(rt) as client:
            for sl in (before, after, other):
                r = await client.post("/api/v1/settlement-lists", json=national_list(sl))
                assert r.status_code == 202, r.text

            async def grouped() -> bool:
                return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == 3

            await wait_until(grouped, 60, "three reviewed cases")
            scheme_of = {}
            for sl in (before, after, other):
                case = (await client.get(f"/api/v1/cases/{sl['hospital_code']}-{sl['setl_id']}")).json()
                scheme_of[sl["setl_id"]] = case["grouped"]["scheme_id"]
        # the grouper recomputes a stored case's trace when asked: the trace of grouping it now
        internal = httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.internal), base_url="http://grouper")
        async with internal:
            r = await internal.get(f"/cases/{after['hospital_code']}-NEW/grouping")
            assert r.status_code == 200, r.text
            missing = await internal.get("/cases/nobody/grouping")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "CASE_NOT_FOUND"
        body = r.json()
        async with rt.engine.connect() as conn:
            [(_id, received)] = [x for x in await latest_received(conn, date(2024, 6, 1), date(2024, 6, 30))
                                 if x[0].endswith("-NEW")]
        traced = load_scheme(SHARED / "schemes" / "quanzhou-2023").group(
            engine_input(received), code_mode=body["code_mode"], trace=True)
        assert traced.trace is not None and body["scheme_id"] == "quanzhou-2023"
        assert body["trace"] == orjson.loads(traced.trace.to_json()) and body["drg"] == traced.drg
        assert body["explanation"] == traced.trace.render()
        # region 350500 switched to its local scheme on 2024-01-01; unregistered regions use the default
        assert scheme_of == {"OLD": "chs-drg-1.1", "NEW": "quanzhou-2023", "ELSEWHERE": "chs-drg-1.1"}
    finally:
        await rt.stop()


async def test_regroup_command_prints_the_migration_table(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    await rt.start()
    try:
        async with await api_client(rt) as client:
            for sl in lists(60, seed=5):
                assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

            async def grouped() -> bool:
                return await count(rt.engine, "grouper_results") == 60

            await wait_until(grouped, 60, "60 grouped cases")
    finally:
        await rt.stop()
    result = await invoke(["regroup", "--scheme", "quanzhou-2023", "--schemes-dir", str(SHARED / "schemes"),
                                 "--db", f"sqlite+aiosqlite:///{tmp_path / 'd.db'}",
                                 "--from", "2024-01-01", "--to", "2024-12-31"])
    assert result.exit_code == 0, result.output
    assert "regrouped 60 cases with quanzhou-2023" in result.output
    missing = await invoke(["regroup", "--scheme", "chs-drg-9.9", "--schemes-dir", str(SHARED / "schemes"),
                                  "--db", f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"])
    assert missing.exit_code != 0 and "chs-drg-9.9" in missing.output


async def test_a_scheme_registered_while_the_grouper_runs_is_in_force_for_the_next_cases(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    await rt.start()
    try:
        base = simple_lists(1)[0] | {"region": "350500", "los": 4, "admission_date": "2024-06-01",
                                     "discharge_date": "2024-06-05"}
        async with await api_client(rt) as client:

            async def submit_and_group(setl_id: str, reviewed: int) -> str:
                sl = base | {"setl_id": setl_id}
                r = await client.post("/api/v1/settlement-lists", json=national_list(sl))
                assert r.status_code == 202, r.text

                async def done() -> bool:
                    return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == reviewed

                await wait_until(done, 60, f"{reviewed} reviewed cases")
                return (await client.get(f"/api/v1/cases/{sl['hospital_code']}-{setl_id}")).json()["grouped"]["scheme_id"]

            assert await submit_and_group("BEFORE", 1) == "chs-drg-1.1"  # the default scheme
            result = await invoke(["scheme", "import", str(SHARED / "schemes" / "quanzhou-2023"),
                                   "--region", "350500", "--from", "2024-01-01",
                                   "--db", f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"])
            assert result.exit_code == 0, result.output
            assert "next batch" in result.output  # no restart asked for
            assert await submit_and_group("AFTER", 2) == "quanzhou-2023"
            # the draft check sees it too
            c = _case_with_cc()
            draft = (await client.post("/api/v1/group", json={k: c[k] for k in (
                "sex", "age", "age_days", "birth_weight", "diagnoses", "procedures")} | {
                "region": "350500", "discharge_date": "2024-06-05"})).json()
            assert draft["scheme_id"] == "quanzhou-2023", draft
    finally:
        await rt.stop()


async def test_a_settlement_list_sent_to_the_draft_check_is_refused_with_what_to_send(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    await rt.start()
    try:
        async with await api_client(rt) as client:
            r = await client.post("/api/v1/group", json=national_list(simple_lists(1)[0]))
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "body" and "settlement list" in err["message"], err
    finally:
        await rt.stop()
