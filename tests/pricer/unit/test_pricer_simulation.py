"""Simulation (§9): a hand-computed profit/loss table, and a synthetic history that is calibrated
and then simulated (RW ≈ 1 on average, a profit/loss row per hospital)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from pricer_testkit import case, make_policy, points_policy, policy_doc

from services.pricer.domain.calibration import CalibrationParams, HistoricalCase, calibrate
from services.pricer.domain.policy import parse_policy
from services.pricer.domain.pricing import CaseToPrice
from services.pricer.domain.simulation import simulate

D = Decimal


def test_profit_loss_cmi_and_outlier_shares_by_hand():
    cases = [
        case(case_id="1", hospital_code="H3", drg="AB13", total_cost="12000"),  # paid 15,000
        case(case_id="2", hospital_code="H3", drg="AB15", total_cost="20000"),  # high: 9,800
        case(case_id="3", hospital_code="H2", drg="AB13", total_cost="4000"),  # low, by item 4,000
        case(case_id="4", hospital_code="H2", drg="ZZ19", total_cost="7000"),  # unpriced
    ]
    r = simulate(make_policy(), cases)
    h2, h3 = r.hospitals
    # H3: DRG 15,000 + 9,800 = 24,800 vs fee-for-service 32,000 → −7,200 (−0.225)
    assert (h3.drg_payment, h3.fee_for_service, h3.profit_loss) == (D("24800.00"), D("32000.00"), D("-7200.00"))
    assert h3.profit_loss_ratio == D("-0.2250")
    # CMI = (1.5 + 0.8) / 2 = 1.15; one high outlier in two DRG cases
    assert (h3.cmi, h3.high_share, h3.low_share) == (D("1.1500"), D("0.5000"), D("0.0000"))
    # H2: the low outlier is paid its cost and the unpriced case stays by item: P/L 0
    assert (h2.unpriced, h2.profit_loss, h2.low_share) == (1, D("0.00"), D("1.0000"))
    assert r.total.profit_loss == D("-7200.00") and r.total.cases == 4
    text = r.table_text()
    assert "H2" in text and "H3" in text and "TOTAL" in text
    assert {row["drg"] for row in r.drg_rows()} == {"AB13", "AB15", "ZZ19"}


def test_point_method_budget_sets_the_point_value():
    # AB13 normal at H3 = 150 points; AB15 normal = 80 points; Σ 230; budget 23,000 → 100 / point
    r = simulate(points_policy(), [case(case_id="1"), case(case_id="2", drg="AB15", total_cost="6000")],
                 budget=D("23000"))
    assert r.point_value == D("100.000000")
    assert r.total.drg_payment == D("23000.00")


# --- synthetic history: calibrate, then simulate ---------------------------------------------------

GROUPS = {  # DRG: mean cost (yuan) in the region
    "GB11": 38000, "GB13": 26000, "GB15": 18000,
    "ES21": 15000, "ES23": 11000, "ES25": 8000, "FM19": 12000,
}
HOSPITALS = {"H3": (3, 1.12), "H2": (2, 0.95), "H1": (1, 0.8)}  # level, cost factor


def synthetic_history(seed: int = 20240101) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for year in (2021, 2022, 2023):
        inflation = 1 + 0.04 * (year - 2021)
        for hospital, (_level, factor) in HOSPITALS.items():
            for drg, mean in GROUPS.items():
                for i in range(rng.randint(25, 60)):
                    cost = mean * factor * inflation * rng.lognormvariate(0, 0.3)
                    los = rng.choice([1, 2] + [rng.randint(3, 20)] * 20 + [75])
                    rows.append({
                        "case_id": f"{hospital}-{drg}-{year}-{i}", "year": year,
                        "hospital_code": hospital, "drg": drg, "region": "R1",
                        "cost": f"{cost:.2f}", "los": los, "withdrawn": rng.random() < 0.01,
                    })
    return rows


def test_calibrated_then_simulated_synthetic_set():
    rows = synthetic_history()
    newest = [r for r in rows if r["year"] == 2023 and not r["withdrawn"]]
    budget = sum((D(r["cost"]) for r in newest if 2 < r["los"] < 60), D(0))
    report = calibrate([HistoricalCase.model_validate(r) for r in rows],
                       CalibrationParams(region="R1", year=2024, budget=budget))
    assert report.exclusions["los_short"] > 0 and report.exclusions["los_long"] > 0
    assert report.exclusions["cost_outlier"] > 0

    # RW ≈ 1 on average, weighted by the kept cases
    kept = sum(g.kept for g in report.groups)
    mean_rw = sum((g.rw * g.kept for g in report.groups), D(0)) / kept
    assert abs(mean_rw - 1) < D("0.05"), mean_rw
    assert report.weights["GB11"] > report.weights["GB13"] > report.weights["GB15"]
    assert not report.inversions

    # a policy from the calibration: its weights, means and the base rate for everyone
    frag = report.weights_document()
    doc = policy_doc(weights=frag["weights"], group_mean_costs=frag["group_mean_costs"],
                     overall_mean_cost=frag["overall_mean_cost"])
    doc["rates"] = {"default": {"default": frag["base_rate"]}}
    policy = parse_policy(doc)
    cases = [CaseToPrice.model_validate({**r, "total_cost": r["cost"], "insurance_type": "310"})
             for r in newest]
    sim = simulate(policy, cases)

    assert [h.key for h in sim.hospitals] == ["H1", "H2", "H3"]
    by = {h.key: h for h in sim.hospitals}
    for h in sim.hospitals:  # a profit/loss row per hospital
        assert h.drg_payment > 0 and h.fee_for_service > 0
        assert h.profit_loss == h.drg_payment - h.fee_for_service
        assert h.cmi is not None and abs(h.cmi - 1) < D("0.1")
    assert by["H1"].profit_loss_ratio != by["H3"].profit_loss_ratio
    # the rate spends the budget at coefficient 1; the secondary (0.85) and primary (0.7)
    # hospitals are paid below it, so the DRG-priced total lands somewhat under the budget
    drg_paid = sum((p.total_payment or 0 for p in sim.prices if p.rw is not None), D(0))
    assert D("0.7") < drg_paid / budget < D("1.0")  # coefficients 0.7–1.0
    # reproducible: the same seed gives the same table
    assert simulate(policy, cases).hospital_rows() == sim.hospital_rows()
    assert "TOTAL" in sim.table_text()
