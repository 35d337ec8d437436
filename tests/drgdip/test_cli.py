"""The bureau's commands against a database: tokens, policy import, bulk import of history."""

from __future__ import annotations

from pathlib import Path

import orjson
from helpers import SHARED, lists, policy
from typer.testing import CliRunner

from drgdip.cli import app

runner = CliRunner()


def test_tokens_are_created_listed_and_revoked(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    created = runner.invoke(app, ["token", "create", "--hospital", "H35050001", "--label", "HIS", "--db", db])
    assert created.exit_code == 0, created.output
    token_id = created.output.split()[1]
    assert created.output.strip().splitlines()[-1].startswith("drgdip_")
    listed = runner.invoke(app, ["token", "list", "--db", db]).output
    assert token_id in listed and "H35050001" in listed and "active" in listed
    assert "drgdip_" not in listed  # the token itself is never shown again
    assert runner.invoke(app, ["token", "revoke", token_id, "--db", db]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["token", "list", "--db", db]).output
    assert runner.invoke(app, ["token", "revoke", token_id, "--db", db]).exit_code == 2
    bad = runner.invoke(app, ["token", "create", "--role", "bureau-admin", "--hospital", "H1", "--db", db])
    assert bad.exit_code == 2


def test_policy_import_stores_a_version_and_names_a_bad_field(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(orjson.dumps(policy()))
    bad.write_bytes(orjson.dumps(policy() | {"method": "guess"}))
    ok = runner.invoke(app, ["policy", "import", str(good), "--db", db])
    assert ok.exit_code == 0 and "imported policy test-2024 v1" in ok.output, ok.output
    refused = runner.invoke(app, ["policy", "import", str(bad), "--db", db])
    assert refused.exit_code == 2 and "method" in refused.output


def test_import_reports_each_rejected_line(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"
    good = lists(5, seed=31)
    broken = dict(good[0], setlinfo=dict(good[0]["setlinfo"], gend="7", setl_id="BAD"))
    file = tmp_path / "history.jsonl"
    file.write_bytes(b"\n".join(orjson.dumps(x) for x in [*good, broken]) + b"\n")
    result = runner.invoke(app, ["import", str(file), "--db", db,
                                 "--dictionary-scheme", str(SHARED / "schemes" / "chs-drg-1.1")])
    assert result.exit_code == 0, result.output
    assert "6 lines, 5 accepted, 0 duplicates, 1 rejected" in result.output
    assert "line 6: setlinfo.gend" in result.output
