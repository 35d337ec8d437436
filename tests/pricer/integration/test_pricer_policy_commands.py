"""Bureau commands around policies on a real database (SQLite): calibrate with the bureau's
expected cases, a policy built from calibration output and imported, the shipped examples,
overlapping policies refused, simulations under a policy that does not cover the cases."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest
from pricer_testkit import dip_policy, policy_doc
from typer.testing import CliRunner

from drgdip.cli import app
from services.pricer.domain.dip_pricing import parse_dip_policy
from services.pricer.domain.policy import PolicyOverlap, load_policy

PRICER = Path(__file__).resolve().parents[3] / "services" / "pricer"
runner = CliRunner()


def run(*args: object, code: int = 0) -> str:
    """The command's output, its lines joined (the console wraps long messages)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def history(path: Path) -> Path:
    """Two DRGs over 2021–2023, six cases a year each (AB11 cost 200, AB15 100)."""
    rows = [{"case_id": f"{drg}-{y}-{i}", "year": y, "region": "R1", "hospital_code": "H3",
             "drg": drg, "cost": cost, "los": 5}
            for y in (2021, 2022, 2023) for drg, cost in (("AB11", "200"), ("AB15", "100"))
            for i in range(6)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_calibrate_with_expected_cases_then_policy_from_calibration_imports(tmp_path: Path) -> None:
    expected = tmp_path / "expected.csv"
    expected.write_text("drg,expected_cases\nAB11,10\nAB15,20\n", "utf-8")
    out = tmp_path / "cal"
    result = run("calibrate", "--input", history(tmp_path / "h.jsonl"), "--region", "R1",
                 "--year", "2024", "--budget", "100000", "--expected-cases", expected,
                 "--out-dir", out)
    assert "given by the bureau" in result
    fragment = orjson.loads((out / "weights-R1-2024.json").read_bytes())
    w = {k: D(v) for k, v in fragment["weights"]["table"].items()}
    assert D(fragment["base_rate"]) == (D(100000) / (10 * w["AB11"] + 20 * w["AB15"])).quantize(D("0.01"))

    levels = tmp_path / "hospitals.json"
    levels.write_bytes(orjson.dumps([{"code": "H3", "level": 3}, {"code": "H2", "level": 2}]))
    policy_file = tmp_path / "policy.json"
    made = run("policy", "from-calibration", "--calibration", out / "weights-R1-2024.json",
               "--hospitals", levels, "--out", policy_file)
    assert "R1-2024-drg-rate v1" in made
    policy = load_policy(policy_file)
    assert (policy.region, str(policy.valid_from), str(policy.valid_to)) == ("R1", "2024-01-01", "2024-12-31")
    assert policy.rate_for("310", 3) == D(fragment["base_rate"]) and policy.weights.table == w
    assert policy.hospitals.levels == {"H3": 3, "H2": 2}
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    assert "imported policy R1-2024-drg-rate v1" in run("policy", "import", policy_file, "--db", db)

    # the point method: a provisional point value is required; a template keeps its sections
    template = tmp_path / "template.json"
    template.write_bytes(orjson.dumps(policy_doc(settlement={"reserve_share": "0.08"})))
    points_file = tmp_path / "points.json"
    bad = run("policy", "from-calibration", "--calibration", out / "weights-R1-2024.json",
              "--method", "points", "--out", points_file, code=2)
    assert "points.provisional_point_value" in bad and not points_file.exists()
    run("policy", "from-calibration", "--calibration", out / "weights-R1-2024.json",
        "--method", "points", "--point-value", "95", "--template", template,
        "--policy-id", "R1-points", "--valid-from", "2025-01-01", "--valid-to", "2025-12-31",
        "--out", points_file)
    points = load_policy(points_file)
    assert points.points.provisional_point_value == D("95")
    assert points.settlement.reserve_share == D("0.08") and points.hospitals.levels == {"H3": 3, "H2": 2, "H1": 1}
    assert str(points.valid_from) == "2025-01-01"


def test_bad_expected_cases_file_names_the_line(tmp_path: Path) -> None:
    expected = tmp_path / "expected.csv"
    expected.write_text("AB11,10\nAB15,ten\n", "utf-8")
    result = run("calibrate", "--input", history(tmp_path / "h.jsonl"), "--region", "R1",
                 "--year", "2024", "--expected-cases", expected, "--out-dir", tmp_path, code=2)
    assert "line 2" in result and "whole number" in result
    assert "Traceback" not in result


def test_calibrate_from_an_empty_store_says_why(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    result = run("calibrate", "--region", "R1", "--year", "2025", "--db", db, "--out-dir",
                 tmp_path, code=1)
    assert "only while the pipeline runs" in result and "drgdip serve all" in result


def test_policy_from_calibration_without_a_rate_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "cal"
    run("calibrate", "--input", history(tmp_path / "h.jsonl"), "--region", "R1", "--year", "2024",
        "--out-dir", out)  # no --budget: no base rate
    result = run("policy", "from-calibration", "--calibration", out / "weights-R1-2024.json",
                 "--out", tmp_path / "p.json", code=2)
    assert "rates:" in result and "--rate" in result
    run("policy", "from-calibration", "--calibration", out / "weights-R1-2024.json",
        "--rate", "9000", "--out", tmp_path / "p.json")
    assert load_policy(tmp_path / "p.json").rate_for(None, None) == D("9000")


def test_shipped_examples_load() -> None:
    drg = load_policy(PRICER / "policy.example.json")
    assert drg.scope.min_los == 2
    dip = parse_dip_policy((PRICER / "dip-policy.example.json").read_bytes())
    assert (dip.scope.min_los, dip.points.provisional_point_value) == (2, D("95.000000"))
    assert dip.hospitals.levels["H003"] == 1


def test_overlapping_policy_refused_unless_a_new_version(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    first = tmp_path / "a.json"
    first.write_bytes(orjson.dumps(policy_doc()))
    run("policy", "import", first, "--db", db)
    # another id, same region, overlapping period: refused, naming both
    other = tmp_path / "b.json"
    other.write_bytes(orjson.dumps(policy_doc(policy_id="other", valid_from="2024-07-01", valid_to=None)))
    result = run("policy", "import", other, "--db", db, code=2)
    assert "overlaps test-2024 v1" in result and "Traceback" not in result
    # a new version of the same policy, or another region, or the next period: accepted
    run("policy", "import", _doc(tmp_path, version=2, valid_to="2024-06-30"), "--db", db)
    run("policy", "import", _doc(tmp_path, policy_id="r2", region="R2"), "--db", db)
    run("policy", "import", _doc(tmp_path, policy_id="y25", valid_from="2025-01-01",
                                 valid_to="2025-12-31"), "--db", db)


def _doc(tmp_path: Path, **over: object) -> Path:
    path = tmp_path / f"p-{len(list(tmp_path.iterdir()))}.json"
    path.write_bytes(orjson.dumps(policy_doc(**over)))
    return path


async def test_overlap_is_a_409_with_the_field(tmp_path: Path) -> None:
    from services.pricer import handlers
    from shared import migrate
    from shared.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        await migrate.upgrade(engine, "pricer")
        async with engine.begin() as conn:
            await handlers.import_policy(conn, orjson.dumps(policy_doc()))
        async with engine.begin() as conn:
            with pytest.raises(PolicyOverlap) as e:
                await handlers.import_policy(conn, orjson.dumps(policy_doc(policy_id="x")))
        assert (e.value.status, e.value.code, e.value.field) == (409, "POLICY_OVERLAP", "valid_from")
    finally:
        await engine.dispose()


def test_simulate_warns_when_the_policy_does_not_cover_the_cases(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_bytes(b"".join(orjson.dumps(
        {"case_id": f"c{i}", "hospital_code": "H3", "region": "R1", "insurance_type": "310",
         "drg": "AB13", "los": 5, "total_cost": "12000", "discharge_date": f"{year}-05-01"}) + b"\n"
        for i, year in enumerate((2023, 2023, 2024))))
    policy = tmp_path / "policy.json"
    policy.write_bytes(orjson.dumps(policy_doc()))  # R1, 2024
    result = run("simulate", "--policy", policy, "--input", cases, "--out-dir", tmp_path / "sim")
    assert "does not cover 2 of 3 cases (discharged in 2023)" in result
    covered = tmp_path / "covered.jsonl"
    covered.write_bytes(cases.read_bytes().splitlines(keepends=True)[2])
    assert "does not cover" not in run("simulate", "--policy", policy, "--input", covered,
                                       "--out-dir", tmp_path / "sim2")
    assert dip_policy().scope.min_los == 2
