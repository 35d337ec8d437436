"""Calibration from the history the pipeline stored: three years of a synthetic region."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
from helpers import SHARED, count, wait_until
from typer.testing import CliRunner

from drgdip.cli import app
from drgdip.generate import generate_region
from drgdip.stages import build_runtime


async def test_calibrate_reads_the_stored_history_and_gives_rw_near_one(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    rt = build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        lists = list(generate_region(SHARED / "schemes" / "chs-drg-1.1", hospitals=6, cases=1500, seed=4,
                                     end_year=2023))
        from services.ingest.domain.intake import Received

        intake = next(s for s in rt.stages if s.name == "ingest").service
        outcomes = await intake.receive([Received("native", orjson.dumps(sl)) for sl in lists])
        accepted = sum(o.status == "accepted" for o in outcomes)

        async def priced() -> bool:
            return await count(rt.engine, "pricer_results") == accepted

        await wait_until(priced, 240, "the history priced (no policy yet: stored with costs)")
    finally:
        await rt.stop()
    out = tmp_path / "calibration"
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "calibrate", "--region", "350500", "--year", "2024", "--db", db, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    report = orjson.loads((out / "calibration-report.json").read_bytes())
    weights = orjson.loads((out / "weights-350500-2024.json").read_bytes())
    assert report["params"]["data_years"] == [2021, 2022, 2023]
    assert report["cases_in"] >= accepted * 0.9  # the region's cases (a few are insured elsewhere)
    assert {e["reason"] for e in report["exclusions"]} >= {"los_short"}
    assert len(weights["weights"]["table"]) >= 100
    # RW_g = M_g / M with year-weighted means: the case-weighted mean RW of the kept cases is ≈ 1
    groups = [g for g in report["groups"] if g["sparse"] != "True"]
    total = sum(int(g["kept"]) for g in groups)
    mean_rw = sum(int(g["kept"]) * Decimal(g["computed_rw"]) for g in groups) / total
    assert abs(mean_rw - 1) < Decimal("0.1"), mean_rw

    # 模拟运行 on the stored last year with the calibrated weights: a profit/loss row per hospital
    doc = orjson.loads((out / "weights-350500-2024.json").read_bytes())
    hospitals = sorted({sl["setlinfo"]["fixmedins_code"] for sl in lists})
    policy_doc = {
        "format": "drgdip.pricing-policy/1", "policy_id": "sim-2023", "version": 1, "region": "350500",
        "valid_from": "2023-01-01", "valid_to": "2023-12-31", "method": "rate", "scheme_id": "chs-drg-1.1",
        "weights": doc["weights"], "group_mean_costs": doc["group_mean_costs"],
        "overall_mean_cost": doc["overall_mean_cost"], "rates": {"default": {"default": doc["overall_mean_cost"]}},
        "hospitals": {"level_coefficients": {"1": "1.0", "2": "1.0", "3": "1.0"}, "levels": {h: 3 for h in hospitals}},
    }
    (tmp_path / "policy.json").write_bytes(orjson.dumps(policy_doc))
    sim = tmp_path / "simulation"
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "simulate", "--policy", str(tmp_path / "policy.json"), "--region", "350500", "--year", "2023",
        "--db", db, "--out-dir", str(sim)])
    assert result.exit_code == 0, result.output
    rows = (sim / "simulation-hospitals.csv").read_text().splitlines()
    assert rows[0].startswith("hospital_code") and len(rows) - 1 == len(hospitals)
    assert "profit_loss" in rows[0]
