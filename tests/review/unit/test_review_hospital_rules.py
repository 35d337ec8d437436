"""The hospital-level monitoring rules (高套 per hospital, 推诿, 服务不足): positive and negative
cases, and a parameter changed changes the outcome as documented."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from review_testkit import HISTORY, NOW, month

from services.review.domain.hospital_rules import (
    HOSPITAL_UPCODING,
    REFUSING_SEVERE,
    UNDER_SERVICE,
    CaseFigure,
    Counts,
    Period,
    PeriodError,
    hospital_flags,
    p_above,
    percentile,
    z_means,
    z_proportions,
)
from services.review.domain.parameters import RuleParameters


def region(now: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> list[CaseFigure]:
    """Cases of each hospital: `now` in the period, `before` in each of the 4 months before."""
    cases = []
    for h, kw in now.items():
        cases += month(h, NOW, **kw)
    for h, kw in before.items():
        for p in HISTORY:
            cases += month(h, p, **kw)
    return cases


def flags(cases: list[CaseFigure], period: Period = NOW, **rules: dict[str, Any]) -> dict[str, list[str]]:
    params = RuleParameters.model_validate(rules)
    out: dict[str, list[str]] = {}
    for f in hospital_flags(cases, period, params):
        out.setdefault(f.rule, []).append(f.hospital_code)
    return out


PEERS = {f"P{i}": {"mcc": 8} for i in range(4)}


def test_periods_parse_shift_and_contain() -> None:
    q = Period.parse("2024Q1")
    assert (q.start.isoformat(), q.end.isoformat(), q.shifted(-1).label, q.kind) == (
        "2024-01-01", "2024-04-01", "2023Q4", "quarter")
    m = Period.parse("2024-01")
    assert m.shifted(-1).label == "2023-12" and m.shifted(13).label == "2025-02"
    assert Period.parse("2024-03").closes_quarter() and Period.parse("2024-03").quarter().label == "2024Q1"
    assert not Period.parse("2024-02").closes_quarter()
    for bad in ("2024-13", "2024Q5", "24-01", "", "2024-1"):
        with pytest.raises(PeriodError):
            Period.parse(bad)


def test_percentile_is_linear_between_ranks() -> None:
    values = [Decimal(v) for v in (1, 2, 3, 4, 5)]
    assert percentile(values, Decimal(90)) == Decimal("4.6")
    assert percentile(values, Decimal(50)) == 3 and percentile([Decimal(7)], Decimal(90)) == 7


def test_hospital_upcoding_fires_on_a_jump_above_the_peers() -> None:
    cases = region({"H1": {"mcc": 20}, **PEERS}, {"H1": {"mcc": 8}, **PEERS})
    found = hospital_flags(cases, NOW, RuleParameters())
    assert [(f.rule, f.hospital_code) for f in found] == [(HOSPITAL_UPCODING, "H1")]
    e = found[0].evidence
    assert e["fired"] == ["mcc_cc_share"] and e["mcc_cc_share"]["period"] == "0.5000"
    assert e["mcc_cc_share"]["history"] == "0.2000" and e["mcc_cc_share"]["peer_percentile"] == "0.2000"
    assert e["history_periods"] == [p.label for p in sorted(HISTORY)] and e["cases"] == 40
    # 20 of 40 against 32 of 160 (history) and of 160 (the peers pooled): z 3.87 both times
    assert e["mcc_cc_share"]["test_history"] == {"z": "3.87", "p": "0.0001"}
    assert e["mcc_cc_share"]["test_peers"] == {"z": "3.87", "p": "0.0001"} and e["significance"] == "0.05"


def test_hospital_upcoding_needs_both_the_jump_and_the_peers() -> None:
    # the peers code as much: not above their 90th percentile
    same = {f"P{i}": {"mcc": 22} for i in range(4)}
    assert flags(region({"H1": {"mcc": 20}, **same}, {"H1": {"mcc": 8}, **same})) == {}
    # no jump against its own history
    assert flags(region({"H1": {"mcc": 20}, **PEERS}, {"H1": {"mcc": 19}, **PEERS})) == {}
    # peers of another level do not count
    other = {f"P{i}": {"mcc": 8, "level": 2} for i in range(4)}
    assert flags(region({"H1": {"mcc": 20}, **other}, {"H1": {"mcc": 8}, **other})) == {}
    # too few cases in the period
    assert flags(region({"H1": {"mcc": 12, "n": 20}, **PEERS}, {"H1": {"mcc": 8}, **PEERS})) == {}


def test_hospital_upcoding_parameters_change_the_outcome() -> None:
    cases = region({"H1": {"mcc": 20}, **PEERS}, {"H1": {"mcc": 8}, **PEERS})
    assert flags(cases, HOSPITAL_UPCODING={"share_jump": "2.0"}) == {}  # rose by 1.5 only
    assert flags(cases, HOSPITAL_UPCODING={"min_peers": 5}) == {}  # 4 peers
    assert flags(cases, HOSPITAL_UPCODING={"enabled": False}) == {}
    # CMI: 20 of 40 cases at RW 2.5 make 1.75 against 1.15 before (+52 %), the peers 1.0
    cmi = region({"H1": {"high": 20}, **PEERS}, {"H1": {"high": 4}, **PEERS})
    found = hospital_flags(cmi, NOW, RuleParameters())
    assert [f.evidence["fired"] for f in found] == [["cmi"]]
    assert found[0].evidence["cmi"]["rise"] == "0.5217" and found[0].evidence["cmi"]["period"] == "1.7500"
    assert flags(cmi, HOSPITAL_UPCODING={"cmi_jump": "0.5"}) == {HOSPITAL_UPCODING: ["H1"]}
    assert flags(cmi, HOSPITAL_UPCODING={"cmi_jump": "0.55"}) == {}


def test_refusing_severe_patients() -> None:
    before = {"H1": {"high": 10, "left": {2: 1, 4: 1}}}
    cases = region({"H1": {"high": 4, "left": {2: 4, 4: 3}}}, before)
    found = hospital_flags(cases, NOW, RuleParameters())
    assert [(f.rule, f.hospital_code) for f in found] == [(REFUSING_SEVERE, "H1")]
    e = found[0].evidence
    assert e["high_rw_share"] == {"period": "0.1000", "history": "0.2500"}
    assert e["left_share"] == {"period": "0.1750", "history": "0.0500"}
    assert e["left_by_way"]["2"] == {"period": "0.1000", "history": "0.0250"}
    # fewer severe cases but nobody sent away: no flag; sent away but as many severe: no flag
    assert flags(region({"H1": {"high": 4, "left": {2: 1, 4: 1}}}, before)) == {}
    assert flags(region({"H1": {"high": 10, "left": {2: 4, 4: 3}}}, before)) == {}
    # parameters: the share fell by 60 %; a 70 % drop is asked for; or RW ≥ 3 counts as high
    assert flags(cases, REFUSING_SEVERE={"drop": "0.7"}) == {}
    assert flags(cases, REFUSING_SEVERE={"high_rw": "3"}) == {}
    # only transfers out count: they rose from 0.025 to 0.1
    assert flags(cases, REFUSING_SEVERE={"discharge_ways": [2]}) == {REFUSING_SEVERE: ["H1"]}
    assert flags(cases, REFUSING_SEVERE={"discharge_ways": [5]}) == {}


def test_under_service() -> None:
    before = {"H1": {"low": 2, "readmit": 1}}
    cases = region({"H1": {"low": 8, "readmit": 6}}, before)
    found = hospital_flags(cases, NOW, RuleParameters())
    assert [(f.rule, f.hospital_code) for f in found] == [(UNDER_SERVICE, "H1")]
    e = found[0].evidence
    assert e["low_outlier_share"] == {"period": "0.2000", "history": "0.0500"}
    assert e["readmission_share"] == {"period": "0.1500", "history": "0.0250"} and e["readmissions"] == 6
    # the low outliers rose alone: no flag; planned readmissions are no readmissions
    assert flags(region({"H1": {"low": 8, "readmit": 1}}, before)) == {}
    assert flags(region({"H1": {"low": 8, "readmit": 6, "planned": True}}, before)) == {}
    # the readmissions come 18 days after: a 10-day window sees none
    assert flags(cases, UNDER_SERVICE={"readmission_days": 10}) == {}
    assert flags(cases, UNDER_SERVICE={"min_points": "0.2"}) == {}


def test_history_is_needed() -> None:
    cases = month("H1", NOW, low=8, readmit=6) + month("H1", HISTORY[0], low=2, readmit=1)
    assert flags(cases) == {}  # one month of history, two needed
    assert flags(cases, UNDER_SERVICE={"min_history_periods": 1}) == {UNDER_SERVICE: ["H1"]}


def test_a_quarter_is_compared_with_the_quarters_before() -> None:
    q = Period.parse("2024Q2")
    cases = []
    for m in (q.start.month, q.start.month + 1, q.start.month + 2):
        cases += month("H1", Period.parse(f"2024-{m:02d}"), high=4, left={2: 4, 4: 3})
    for back in range(1, 5):
        p = q.shifted(-back)
        cases += month("H1", Period(p.year, 1, p.first_month), high=10, left={2: 1, 4: 1})
    found = hospital_flags(cases, q, RuleParameters())
    assert [(f.rule, f.period) for f in found] == [(REFUSING_SEVERE, "2024Q2")]
    assert found[0].evidence["history_periods"] == ["2023Q2", "2023Q3", "2023Q4", "2024Q1"]


def test_the_z_statistics() -> None:
    # 20 of 40 against 32 of 160: pooled 0.26, se √(0.26 × 0.74 × (1/40 + 1/160)) = 0.0775
    assert round(z_proportions(20, 40, 32, 160) or 0, 3) == 3.869
    assert z_proportions(0, 40, 0, 160) == 0 and z_proportions(3, 0, 1, 10) is None
    assert round(p_above(1.6449) or 0, 3) == 0.05
    # mean RW 2 (1 and 3) against 1 (all 1): the second side does not vary, se √(2/2) = 1
    a = Counts(weighted=2, weight=Decimal(4), weight_sq=Decimal(10))
    b = Counts(weighted=3, weight=Decimal(3), weight_sq=Decimal(3))
    assert z_means(a, b) == 1.0 and z_means(b, b) == 0 and z_means(Counts(weighted=1), b) is None


def test_a_change_must_be_unlikely_to_be_chance_at_the_hospitals_volume() -> None:
    # the low-outlier share doubles (0.05 → 0.10) with the readmissions (0.025 → 0.075): large
    # enough for the thresholds, yet at 40 cases a month it is chance (one-sided p 0.12 and 0.06)
    small = region({"H1": {"low": 4, "readmit": 3}}, {"H1": {"low": 2, "readmit": 1}})
    assert flags(small) == {}
    assert flags(small, UNDER_SERVICE={"significance": "0.2"}) == {UNDER_SERVICE: ["H1"]}
    assert flags(small, UNDER_SERVICE={"significance": "1"}) == {UNDER_SERVICE: ["H1"]}  # no test
    # the same shares at 400 cases a month are not chance (z 3.77 and 4.87)
    large = region({"H1": {"n": 400, "low": 40, "readmit": 30}}, {"H1": {"n": 400, "low": 20, "readmit": 10}})
    found = hospital_flags(large, NOW, RuleParameters())
    assert [(f.rule, f.hospital_code) for f in found] == [(UNDER_SERVICE, "H1")]
    assert found[0].evidence["test_low_outlier_rise"] == {"z": "3.77", "p": "0.0001"}
    assert found[0].evidence["test_readmission_rise"]["z"] == "4.87"


def test_refusing_severe_and_hospital_upcoding_need_significant_changes_too() -> None:
    # severe cases 10 → 7 of 40 and transfers 1 → 3 of 40: large, but chance at this volume
    before = {"H1": {"high": 10, "left": {2: 1}}}
    assert flags(region({"H1": {"high": 7, "left": {2: 3}}}, before)) == {}
    assert flags(region({"H1": {"high": 7, "left": {2: 3}}}, before),
                 REFUSING_SEVERE={"significance": "1"}) == {REFUSING_SEVERE: ["H1"]}
    # the MCC/CC share 8 → 12 of 40 (+50 %) above peers at 8: not significant (z 1.37)
    cases = region({"H1": {"mcc": 12}, **PEERS}, {"H1": {"mcc": 8}, **PEERS})
    assert flags(cases) == {}
    assert flags(cases, HOSPITAL_UPCODING={"significance": "1"}) == {HOSPITAL_UPCODING: ["H1"]}
