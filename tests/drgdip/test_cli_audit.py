"""The administrative commands leave the audit row their gateway route leaves: one append-only
`gateway_audit` row per command that took effect (none for a refused one), with `cli:<user>` as
the actor, which the bureau-admin's audit query and export show."""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
from pathlib import Path
from typing import Any

import orjson
from helpers import SHARED, api_client, count, policy, receive_and_price
from typer.testing import CliRunner

from drgdip.cli import app
from drgdip.stages import build_runtime

N = 8
runner = CliRunner()


def _runtime(db: str) -> Any:
    return build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING")


async def _priced_history(db: str) -> str:
    """N lists priced without a policy; the month they were discharged in."""
    rt = _runtime(db)
    await rt.start()
    try:
        sent = await receive_and_price(rt, N)
    finally:
        await rt.stop()
    return str(sent[0]["setlinfo"]["dscg_time"][:7])


async def _audit_through_the_api(db: str) -> tuple[list[dict[str, Any]], list[dict[str, str]], int]:
    rt = _runtime(db)
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            r = await admin.get("/api/v1/audit")
            assert r.status_code == 200, r.text
            e = await admin.get("/api/v1/audit.csv")
            assert e.status_code == 200, e.text
        rows = await count(rt.engine, "gateway_audit", "action != 'audit.exported'")
        return r.json()["entries"], list(csv.DictReader(io.StringIO(e.text))), rows
    finally:
        await rt.stop()


def _run(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, f"{args}\n{r.output}"
    return r.output


def test_each_administrative_command_leaves_one_audit_row(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'bureau.db'}"
    month = asyncio.run(_priced_history(db))
    good, bad = tmp_path / "policy.json", tmp_path / "bad.json"
    good.write_bytes(orjson.dumps(policy() | {"valid_from": "2000-01-01"}))
    bad.write_bytes(orjson.dumps(policy() | {"method": "guess"}))
    year = month[:4]

    _run("policy", "import", str(good), "--db", db)
    _run("reprice", "--region", "350500", "--db", db)
    _run("settle", "--policy-id", "test-2024", "--period", month, "--db", db)
    _run("advance", "--hospital", "H35050001", "--year", year, "--amount", "1000.00", "--db", db)
    _run("settle", "--policy-id", "test-2024", "--period", year, "--budget", "200000.00", "--db", db)
    _run("scheme", "import", str(SHARED / "schemes" / "quanzhou-2023"), "--region", "350500",
         "--from", "2024-01-01", "--db", db)
    _run("regroup", "--scheme", "quanzhou-2023", "--schemes-dir", str(SHARED / "schemes"), "--db", db)
    # refused: nothing took effect, nothing recorded
    assert runner.invoke(app, ["policy", "import", str(bad), "--db", db]).exit_code == 2
    assert runner.invoke(app, ["settle", "--policy-id", "test-2024", "--period", "1999-01", "--db", db]).exit_code == 1

    entries, exported, rows = asyncio.run(_audit_through_the_api(db))
    actor = f"cli:{getpass.getuser()}"
    by_cli = [(e["action"], e["subject"]) for e in entries if e["actor"] == actor]
    assert by_cli == [
        ("policy.imported", "test-2024 v1"),
        ("cases.repriced", "350500 .."),
        ("settlement.run", f"test-2024 {month} v1"),
        ("advance.recorded", f"H35050001 {year}"),
        ("settlement.run", f"test-2024 {year} v1"),
        ("scheme.registered", "quanzhou-2023 350500 2024-01-01.."),
        ("cases.regrouped", "quanzhou-2023 .."),
    ]
    assert rows == len(by_cli)  # and nothing else: the refused commands left no row
    details = [orjson.loads(e["detail"]) for e in entries]
    assert details[1]["repriced"] == N and details[1]["by_policy"] == {"test-2024 v1": N}
    assert "statements" not in details[2] and details[2]["hospitals"] > 0  # the run's figures, as the route's
    assert details[6]["cases"] == N
    assert [(r["action"], r["subject"], r["actor"]) for r in exported] == [
        (a, s, actor) for a, s in by_cli]


def test_the_audit_can_go_to_the_gateways_own_database(tmp_path: Path) -> None:
    """Distributed: the command works on the pricer's database, the row goes to the gateway's."""
    pricer, gateway = (f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("pricer.db", "gateway.db"))
    file = tmp_path / "policy.json"
    file.write_bytes(orjson.dumps(policy()))
    _run("policy", "import", str(file), "--db", pricer, "--audit-db", gateway)

    async def counts() -> tuple[int, int]:
        from shared.db import create_engine

        engines = [create_engine(pricer), create_engine(gateway)]
        try:
            return (await count(engines[0], "pricer_policy_versions"),
                    await count(engines[1], "gateway_audit", "action = 'policy.imported'"))
        finally:
            for engine in engines:
                await engine.dispose()

    assert asyncio.run(counts()) == (1, 1)
