"""`drgdip review run`: the hospital-level rules for a month or a quarter on review's database,
the region's parameters applied, a run again changing nothing, a bad period refused."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from review_testkit import HISTORY, NOW, month
from sqlalchemy import select
from typer.testing import CliRunner

from drgdip.cli import app
from services.review import repository
from services.review.cli import in_transaction
from services.review.domain.hospital_rules import Period


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("review_run"))


def _rows(region: str) -> list[dict]:
    """H1 sends its severe cases away in 2024-05; H2 does not."""
    cases = month("H1", NOW, high=4, left={2: 4, 4: 3}) + month("H2", NOW, high=10, left={2: 1})
    for p in HISTORY:
        cases += month("H1", p, high=10, left={2: 1, 4: 1}) + month("H2", p, high=10, left={2: 1})
    return [dict(case_id=c.case_id, region=region, hospital_code=c.hospital_code, hospital_level=c.hospital_level,
                 psn_key=c.psn_key, admission_date=c.admission_date, discharge_date=c.discharge_date, drg=c.drg,
                 weight=c.weight, case_type=c.case_type, discharge_way=c.discharge_way, planned=c.planned,
                 withdrawn=False, facts="{}") for c in cases]  # facts: not read by these rules


def test_review_run_raises_hospital_flags_once(tmp_path: Path, db_url: str) -> None:
    db = db_url

    async def seed(conn) -> None:  # type: ignore[no-untyped-def]
        await repository.save_stays(conn, _rows("350500"))

    in_transaction(db, seed)
    runner = CliRunner()
    first = runner.invoke(app, ["review", "run", "--period", "2024-05", "--db", db])
    assert first.exit_code == 0, first.output
    assert "350500 2024-05: 80 cases at 2 hospitals, rules default: 1 flags (1 new, 0 superseded)" in first.output
    assert "H1" in first.output and "REFUSING_SEVERE" in first.output and "H2 " not in first.output
    again = runner.invoke(app, ["review", "run", "--period", "2024-05", "--region", "350500", "--db", db])
    assert "1 flags (0 new, 0 superseded)" in again.output

    async def stored(conn) -> list:  # type: ignore[no-untyped-def]
        return (await conn.execute(select(repository.flags.c.hospital_code, repository.flags.c.rule,
                                          repository.flags.c.level, repository.flags.c.period,
                                          repository.flags.c.status, repository.flags.c.evidence))).all()

    rows = in_transaction(db, stored)
    assert [tuple(r)[:5] for r in rows] == [("H1", "REFUSING_SEVERE", "hospital", "2024-05", "open")]
    assert orjson.loads(rows[0].evidence)["left_share"] == {"period": "0.1750", "history": "0.0500"}

    # the region's parameters: a 70 % drop asked for; the open flag no longer fires and is superseded
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps({"format": "drgdip.review-rules/1", "rules": {"REFUSING_SEVERE": {"drop": "0.7"}}}))
    assert runner.invoke(app, ["review", "rules", "import", str(rules), "--region", "350500",
                               "--from", "2024-01-01", "--db", db]).exit_code == 0
    stricter = runner.invoke(app, ["review", "run", "--period", "2024-05", "--db", db])
    assert "rules 350500 v1: 0 flags (0 new, 1 superseded)" in stricter.output

    quarter = runner.invoke(app, ["review", "run", "--period", Period.parse("2024Q2").label, "--db", db])
    assert quarter.exit_code == 0 and "350500 2024Q2: 160 cases" in quarter.output
    empty = runner.invoke(app, ["review", "run", "--period", "2030-01", "--db", db])
    assert empty.exit_code == 0 and "no cases discharged in 2030-01" in empty.output
    bad = runner.invoke(app, ["review", "run", "--period", "2024-13", "--db", db])
    assert bad.exit_code == 2 and "period" in bad.output
