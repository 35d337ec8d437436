"""`drgdip review rules`: the shipped defaults, importing a region's parameters as versions, the
list of stored versions, and a bad document refused naming the field."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from drgdip.cli import app


def test_import_list_and_defaults(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'review.db'}"
    runner = CliRunner()
    defaults = runner.invoke(app, ["review", "rules", "defaults"])
    assert defaults.exit_code == 0, defaults.output
    doc = orjson.loads(defaults.output)
    assert doc["rules"]["SPLIT_ADMISSION"]["days"] == 15 and doc["rules"]["COST_SHIFTING"]["min_cases"] == 30

    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps({"format": "drgdip.review-rules/1",
                                    "rules": {"SPLIT_ADMISSION": {"days": 10}}}))
    args = ["review", "rules", "import", str(rules), "--region", "350500", "--from", "2024-01-01", "--db", db]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "imported review rules 350500 v1 (from 2024-01-01)" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "unchanged: review rules 350500 v1" in again.output
    later = runner.invoke(app, args[:-4] + ["--from", "2025-01-01", "--to", "2025-12-31", "--db", db])
    assert "350500 v2 (from 2025-01-01 to 2025-12-31)" in later.output
    listed = runner.invoke(app, ["review", "rules", "list", "--db", db])
    lines = [line.split()[:3] for line in listed.output.splitlines()]
    assert lines == [["350500", "v1", "2024-01-01"], ["350500", "v2", "2025-01-01"]]

    rules.write_bytes(b'{"format": "drgdip.review-rules/1", "rules": {"SPLIT_ADMISSION": {"days": -1}}}')
    bad = runner.invoke(app, args)
    assert bad.exit_code == 2 and "rules.SPLIT_ADMISSION.days" in bad.output
