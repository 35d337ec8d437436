"""Calibration (§6): exclusions, IQR trimming, 1:2:7 weighting, RW, sparse groups, inversions,
CV/RIV and the base rate from the budget, each with a hand-computed example."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.pricer.domain.calibration import (
    CalibrationParams,
    HistoricalCase,
    base_rate_from_budget,
    calibrate,
    find_inversions,
    quantile,
)

D = Decimal


def hc(drg: str, year: int, cost: str | int, **kw: Any) -> HistoricalCase:
    fields: dict[str, Any] = {"case_id": f"{drg}-{year}-{cost}", "year": year, "drg": drg,
                              "cost": str(cost), "los": 7}
    fields.update(kw)
    return HistoricalCase.model_validate(fields)


def params(**kw: Any) -> CalibrationParams:
    return CalibrationParams(**{"region": "R1", "year": 2024, **kw})


def test_quantile_is_type_7():
    xs = [D(x) for x in (90, 100, 100, 110, 120, 120, 140, 900)]
    # Q1: h = 7 × 0.25 = 1.75 → x1 + 0.75 (x2 − x1) = 100 + 0.75 × 0 = 100
    # Q3: h = 7 × 0.75 = 5.25 → x5 + 0.25 (x6 − x5) = 120 + 0.25 × 20 = 125
    assert quantile(xs, D("0.25")) == D("100")
    assert quantile(xs, D("0.75")) == D("125")


# Two groups over the data years 2021, 2022, 2023 (weights 1:2:7) for 2024.
#   AB11: 2021 [90, 110]  2022 [100, 120]  2023 [100, 120, 140, 900]
#   AB15: 2021 [50, 50]   2022 [50]        2023 [55, 60, 65]
TRIM_AND_WEIGHT = (
    [hc("AB11", 2021, c) for c in (90, 110)] + [hc("AB11", 2022, c) for c in (100, 120)]
    + [hc("AB11", 2023, c) for c in (100, 120, 140, 900)]
    + [hc("AB15", 2021, c, case_id=f"AB15-2021-{i}") for i, c in enumerate((50, 50))]
    + [hc("AB15", 2022, 50)] + [hc("AB15", 2023, c) for c in (55, 60, 65)]
)


def test_rw_with_iqr_trimming_and_1_2_7_weighting():
    r = calibrate(TRIM_AND_WEIGHT, params())
    ab11, ab15 = (next(g for g in r.groups if g.drg == x) for x in ("AB11", "AB15"))
    # AB11 pooled, sorted: 90 100 100 110 120 120 140 900; Q1 = 100, Q3 = 125, IQR = 25
    # keep [100 − 0.5 × 25, 125 + 1.5 × 25] = [87.5, 162.5]: 900 is trimmed, 90 kept
    assert (ab11.q1, ab11.q3, ab11.lower_fence, ab11.upper_fence) == (D(100), D(125), D("87.5"), D("162.5"))
    assert (ab11.cases, ab11.kept, ab11.trimmed) == (8, 7, 1)
    # AB15 pooled: 50 50 50 55 60 65; Q1 = 50 (h 1.25), Q3 = 55 + 0.75 × 5 = 58.75;
    # fences [46.25, 71.875]: nothing trimmed
    assert ab15.trimmed == 0 and ab15.upper_fence == D("71.875")
    # AB11 yearly means 100, 110, 120 → M = (1×100 + 2×110 + 7×120) / 10 = 116
    assert ab11.mean_cost == D(116)
    # AB15 yearly means 50, 50, 60 → M = (50 + 100 + 420) / 10 = 57
    assert ab15.mean_cost == D(57)
    # overall yearly means: 2021 (90+110+50+50)/4 = 75; 2022 (100+120+50)/3 = 90;
    # 2023 (100+120+140+55+60+65)/6 = 90 → M = (75 + 180 + 630) / 10 = 88.5
    assert r.overall_mean_cost == D("88.5")
    # RW = 116 / 88.5 = 1.31073… → 1.3107; 57 / 88.5 = 0.64406… → 0.6441
    assert (ab11.rw, ab15.rw) == (D("1.3107"), D("0.6441"))
    assert r.exclusions["cost_outlier"] == 1
    assert ("AB11-2023-900", "cost_outlier") in r.excluded


def test_base_rate_from_budget():
    # r = budget / Σ(expected cases × RW) = 1,000,000 / (100 × 1.5 + 250 × 0.8) = 1,000,000 / 350
    #   = 2857.142857… → 2857.14
    assert base_rate_from_budget(D("1000000"), 100 * D("1.5") + 250 * D("0.8")) == D("2857.14")


def test_base_rate_in_a_calibration_uses_the_newest_years_cases():
    # expected cases = 2023 cases after the scope exclusions: AB11 4 (the trimmed 900 is still a
    # case to pay), AB15 3 → Σ = 4 × 1.3107 + 3 × 0.6441 = 5.2428 + 1.9323 = 7.1751
    # r = 71751 / 7.1751 = 10000.00
    r = calibrate(TRIM_AND_WEIGHT, params(budget=D("71751")))
    assert r.expected_rw_sum == D("7.1751")
    assert r.base_rate == D("10000.00")


def test_scope_exclusions_are_counted_by_reason():
    base = [hc("AB15", 2023, 100, case_id=f"ok{i}") for i in range(5)]
    odd = [
        hc("AB15", 2023, 100, case_id="w", withdrawn=True),
        hc("AB15", 2023, 100, case_id="pd", per_diem=True),
        hc("AB15", 2023, 100, case_id="s", los=2),
        hc("AB15", 2023, 100, case_id="l", los=60),
        hc("AB15", 2020, 100, case_id="old"),
        hc("AB15", 2023, 100, case_id="rg", region="R9"),
        hc("0000", 2023, 100, case_id="fail", status="FAIL"),
    ]
    r = calibrate(base + odd, params())
    assert r.cases_in == 12 and r.kept == 5
    assert {k: v for k, v in r.exclusions.items() if v} == {
        "withdrawn": 1, "per_diem": 1, "los_short": 1, "los_long": 1, "outside_years": 1,
        "other_region": 1, "not_grouped": 1}
    assert dict((c, why) for c, why in r.excluded)["s"] == "los_short"
    rules = {e["reason"]: e["rule"] for e in r.to_dict()["exclusions"]}
    assert rules["los_short"] == "LOS ≤ 2 days" and "0.5·IQR" in rules["cost_outlier"]


# One year (2023) only: CD15 six cases of 100, CD11 two cases 250 and 350 (sparse: < 5).
SPARSE = [hc("CD15", 2023, 100, case_id=f"a{i}") for i in range(6)] + [
    hc("CD11", 2023, 250), hc("CD11", 2023, 350)]


def test_sparse_group_borrows_the_adrg_mean():
    r = calibrate(SPARSE, params())
    cd11 = next(g for g in r.groups if g.drg == "CD11")
    # overall mean (2023 only) = (600 + 600) / 8 = 150; CD11 computed 300 / 150 = 2.0
    assert cd11.sparse and cd11.computed_rw == D("2.0000")
    # the ADRG CD1 (both splits) has mean 150 too → RW 1.0000
    assert cd11.rw == D("1.0000") and cd11.fix == "adrg_mean"
    assert not next(g for g in r.groups if g.drg == "CD15").sparse


def test_sparse_group_expert_weight():
    r = calibrate(SPARSE, params(sparse_fix="expert", expert_weights={"CD11": D("1.8")}))
    assert r.weights["CD11"] == D("1.8000")
    r2 = calibrate(SPARSE, params(sparse_fix="expert"))
    cd11 = next(g for g in r2.groups if g.drg == "CD11")
    assert cd11.fix == "expert_missing" and cd11.rw == D("2.0000")


def test_cv_and_riv():
    r = calibrate(SPARSE, params())
    by = {g.drg: g for g in r.groups}
    # CD15 is constant: CV 0. CD11 250, 350: mean 300, sample sd √5000 = 70.7107 → 0.2357
    assert by["CD15"].cv == D("0.0000") and by["CD11"].cv == D("0.2357")
    # grand mean 150. SST = 6 × 50² + 100² + 200² = 65000; SSW = 50² + 50² = 5000
    # RIV = 1 − 5000 / 65000 = 0.923077 → 0.9231
    assert r.riv == D("0.9231")


def test_inversion_detection():
    weights = {"ES21": D("0.9"), "ES23": D("1.0"), "ES25": D("0.7"),
               "GB11": D("2.0"), "GB15": D("2.1"), "XX19": D("1")}
    found = [(i.drg, i.lighter_drg) for i in find_inversions(weights, {})]
    # ES21 (MCC) 0.9 < ES23 (CC) 1.0 and GB11 2.0 < GB15 2.1; ES21 > ES25 and ES23 > ES25 are fine
    assert found == [("ES21", "ES23"), ("GB11", "GB15")]


def test_inversion_found_in_a_calibration():
    # EF11 (with MCC) costs less than EF15 (without): 80 vs 120, 5 cases each, one year
    cases = [hc("EF11", 2023, 80, case_id=f"m{i}") for i in range(5)] + [
        hc("EF15", 2023, 120, case_id=f"n{i}") for i in range(5)]
    r = calibrate(cases, params())
    # overall 100: EF11 0.8 < EF15 1.2
    assert [(i.drg, i.rw, i.lighter_drg, i.lighter_rw) for i in r.inversions] == [
        ("EF11", D("0.8000"), "EF15", D("1.2000"))]
    assert "weight inversions 1" in r.summary_text()


def test_report_outputs():
    r = calibrate(TRIM_AND_WEIGHT, params(budget=D("71751")))
    doc = orjson.loads(orjson.dumps(r.to_dict()))
    assert doc["base_rate"] == "10000.00" and doc["cases_kept"] == 13  # AB11 7 + AB15 6
    w = r.weights_document()
    assert w["weights"] == {"version": "R1-2024-calibrated", "table": {"AB11": "1.3107", "AB15": "0.6441"}}
    assert w["group_mean_costs"] == {"AB11": "116.00", "AB15": "57.00"}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(r.csv_rows()[0]))
    writer.writeheader()
    writer.writerows(r.csv_rows())
    assert "AB11" in buf.getvalue()
    text = r.summary_text()
    assert "base rate = 71751 / 7.1751 = 10000.00" in text and "1:2:7" in text


def test_year_from_discharge_date_and_adrg_from_drg():
    c = HistoricalCase.model_validate({"id": "x", "discharge_date": "2023-05-02", "drg": "GB11",
                                       "total_cost": 1})
    assert (c.year, c.adrg, c.case_id) == (2023, "GB1", "x")


def test_nothing_left_is_an_error():
    with pytest.raises(ValueError, match="no cases left"):
        calibrate([hc("AB11", 2019, 1)], params())
