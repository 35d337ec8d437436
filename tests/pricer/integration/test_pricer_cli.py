"""CLI: `price`, `calibrate` and `simulate` on tiny files, through a typer app built here."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import typer
from pricer_testkit import policy_doc
from typer.testing import CliRunner

from services.pricer.cli import calibrate_command, price_command, simulate_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("price")(price_command)
    app.command("calibrate")(calibrate_command)
    app.command("simulate")(simulate_command)
    return app


def _write_jsonl(path: Path, rows: list[object], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [orjson.dumps(r).decode() for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def _policy(tmp_path: Path, **over: object) -> Path:
    p = tmp_path / "policy.json"
    p.write_bytes(orjson.dumps(policy_doc(**over)))
    return p


CASES = [
    {"id": "c1", "hospital_code": "H3", "hi_type": "310", "drg": "AB13", "status": "SUCCESS",
     "los": 8, "total_cost": 12000, "patient_share": "1000"},
    {"case_id": "c2", "hospital_code": "H2", "insurance_type": "resident", "drg": "AB15",
     "group_status": "SUCCESS", "los": 5, "total_cost": "20000"},
    {"case_id": "c3", "hospital_code": "H1", "drg": "0000", "group_status": "FAIL", "total_cost": "5"},
]


def test_price_command_writes_one_price_per_valid_line(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", CASES, ("{bad json", "[1]", "",
                                                      '{"case_id": "x", "total_cost": "1"}'))
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(_app(), ["price", "--policy", str(_policy(tmp_path)),
                                      "--input", str(src), "--output", str(out)])
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [r["case_id"] for r in rows] == ["c1", "c2", "c3"]
    # c1: 10000 × 1.5 = 15000, fund 14000; c2 resident, level 2: 8000 × 0.8 × 0.85 = 5440,
    # high outlier (20000 > 18000): + 2000 × 0.9 = 1800 → 7240
    assert (rows[0]["payment"], rows[0]["fund_payment"]) == ("15000.00", "14000.00")
    assert (rows[1]["case_type"], rows[1]["payment"]) == ("high_outlier", "7240.00")
    assert rows[2]["case_type"] == "not_grouped" and rows[2]["payment"] is None
    assert "line 4" in res.output and "hospital_code" in res.output  # the bad lines, reported
    assert "total payment: 22240.00" in res.output


def test_price_command_is_repeatable(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", CASES)
    policy = _policy(tmp_path)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}.jsonl"
        assert CliRunner().invoke(_app(), ["price", "--policy", str(policy), "--input", str(src),
                                           "--output", str(out)]).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_price_command_rejects_a_bad_policy_with_the_field(tmp_path):
    bad = _policy(tmp_path, outliers={"low_ratio": 0.4})
    src = _write_jsonl(tmp_path / "in.jsonl", CASES)
    res = CliRunner().invoke(_app(), ["price", "--policy", str(bad), "--input", str(src),
                                      "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2
    assert "outliers.low_ratio" in res.output


def _history() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for year, factor in ((2021, 1), (2022, 2), (2023, 3)):
        for i in range(6):
            rows.append({"id": f"a{year}{i}", "year": year, "drg": "AB15", "cost": str(100 * factor), "los": 5})
            rows.append({"id": f"b{year}{i}", "year": year, "drg": "AB11", "cost": str(300 * factor), "los": 5})
    rows.append({"id": "short", "year": 2023, "drg": "AB15", "cost": "1", "los": 1})
    return rows


def test_calibrate_command_writes_weights_report_and_csv(tmp_path):
    src = _write_jsonl(tmp_path / "hist.jsonl", _history())
    out_dir = tmp_path / "out"
    res = CliRunner().invoke(_app(), ["calibrate", "--input", str(src), "--region", "R1",
                                      "--year", "2024", "--budget", "4800", "--out-dir", str(out_dir)])
    assert res.exit_code == 0, res.output
    weights = orjson.loads((out_dir / "weights-R1-2024.json").read_bytes())
    # every year AB11 costs 3 × AB15, and both are half the cases: RW 1.5 and 0.5
    assert weights["weights"]["table"] == {"AB11": "1.5000", "AB15": "0.5000"}
    # base rate = 4800 / (6 × 1.5 + 6 × 0.5) = 4800 / 12 = 400 (the LOS-1 case is excluded)
    assert weights["base_rate"] == "400.00"
    report = orjson.loads((out_dir / "calibration-report.json").read_bytes())
    assert {e["reason"]: e["cases"] for e in report["exclusions"]}["los_short"] == 1
    with (out_dir / "calibration-groups.csv").open() as fh:
        assert [r["drg"] for r in csv.DictReader(fh)] == ["AB11", "AB15"]
    assert (out_dir / "calibration-excluded.csv").read_text().count("los_short") == 1
    assert "base rate = 4800 / 12.0000 = 400.00" in res.output


def test_calibrate_command_rejects_bad_year_weights(tmp_path):
    src = _write_jsonl(tmp_path / "hist.jsonl", _history())
    res = CliRunner().invoke(_app(), ["calibrate", "--input", str(src), "--region", "R1",
                                      "--year", "2024", "--year-weights", "1,x",
                                      "--out-dir", str(tmp_path)])
    assert res.exit_code != 0


def test_simulate_command_writes_tables(tmp_path):
    src = _write_jsonl(tmp_path / "cases.jsonl", CASES)
    out_dir = tmp_path / "sim"
    res = CliRunner().invoke(_app(), ["simulate", "--policy", str(_policy(tmp_path)),
                                      "--input", str(src), "--out-dir", str(out_dir)])
    assert res.exit_code == 0, res.output
    doc = orjson.loads((out_dir / "simulation.json").read_bytes())
    assert [h["hospital_code"] for h in doc["hospitals"]] == ["H1", "H2", "H3"]
    with (out_dir / "simulation-hospitals.csv").open() as fh:
        rows = {r["hospital_code"]: r for r in csv.DictReader(fh)}
    # H3: 15000 vs 12000 → +3000; H2: 7240 vs 20000 → −12760
    assert rows["H3"]["profit_loss"] == "3000.00" and rows["H2"]["profit_loss"] == "-12760.00"
    assert len((out_dir / "simulation-prices.jsonl").read_bytes().splitlines()) == 3
    assert "TOTAL" in res.output
