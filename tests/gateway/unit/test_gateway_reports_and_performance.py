"""Reports (one renderer, escaped, no per-doctor column) and the performance score and deposit
share, against hand-computed examples (docs/domain.md §12, §14)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from services.gateway.domain import performance as perf
from services.gateway.domain import reports as rep
from shared.csvexport import to_csv
from shared.errors import Invalid
from shared.xlsxexport import to_xlsx

D = Decimal


def _reports() -> list[rep.Report]:
    own = {"cases": 10, "grouped": 9, "grouping_rate": "0.9000", "cmi": "1.2000", "payment_sum": "1000.00",
           "surplus": "-50.00"}
    return [
        rep.monthly_feedback("H<1>", "2024-03", own, {"grouping_rate": "0.9500"},
                             [{"drg": "AB11", "cases": 9, "payment_sum": "1000.00"}], {"split_admission": 2},
                             [{"month": "2024-03", "lists": 12, "passed": 10, "pass_rate": "0.8333"}],
                             {"presettled": "900.00", "quality_deposit": "47.50"}),
        rep.quarterly_bulletin("350500", "2024Q1", {"budget": "100000.00"}, {"01": D("10"), "09": D("30")},
                               [{"key": "H1", "level": 3, "cases": 2, "cost_sum": "40.00", "average_cost": "20.00",
                                 "payment_sum": "50.00", "surplus": "10.00"}],
                               [{"key": 3, "cases": 2, "average_los": "5.00"}], {"cost_sum": "40.00", "cases": 2}),
        rep.special_case_publication("2024H1", "全区", [{"hospital_code": "H1", "applications": 3}]),
        rep.standards_comparison("AB11", {"region": "A", "policy_id": "a", "version": 1, "standards": [
            {"level": 3, "standard": "20000.00"}]}, {"region": "B", "policy_id": "b", "version": 2, "standards": [
                {"level": 3, "standard": "22000.00"}]}),
    ]


def test_no_report_has_a_doctor_column() -> None:
    # §12: payment standards are never turned into per-doctor figures
    for report in _reports():
        assert not any("doctor" in k or "physician" in k for k in rep.column_keys(report)), report.kind
        assert not any(w in label for label in rep.column_labels(report) for w in ("医师", "医生")), report.kind


def test_html_is_escaped_printable_and_self_contained() -> None:
    page = rep.render_html(_reports()[0])
    assert "H&lt;1&gt;" in page and "H<1>" not in page
    assert "@media print" in page and 'lang="zh-CN"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert "月度反馈" in page and "质量保证金" in page


def test_csv_and_xlsx_carry_the_same_table() -> None:
    report = _reports()[1]
    columns, rows = rep.table(report)
    assert columns[0] == "section"
    text = list(csv.DictReader(io.StringIO(to_csv(columns, rows))))
    sheet = load_workbook(io.BytesIO(to_xlsx(columns, rows))).active
    assert len(text) == len(rows) == sheet.max_row - 1
    fees = {r["item"]: r for r in text if r["section"] == "fees"}
    # 10 + 30 = 40: item 01 is a quarter, item 09 three quarters
    assert (fees["01"]["amount"], fees["01"]["share"], fees["09"]["share"]) == ("10.00", "0.2500", "0.7500")
    assert rep.Report.from_dict(report.to_dict()) == rep.Report.from_dict(report.to_dict())


def test_standards_difference_in_yuan_and_percent() -> None:
    [row] = _reports()[3].sections[1].rows
    # 22,000 − 20,000 = 2,000 yuan = 10 % of 20,000
    assert (row["difference"], row["difference_rate"]) == (D("2000.00"), "0.1000")


def _inputs(code: str, **kw: object) -> perf.Inputs:
    base: dict[str, object] = dict(level=3, cases=100, grouped=95, weight_sum=D("110"), weighted=100, outliers=10,
                                   special_cases=2, readmissions_31=4, cost_sum=D("1000000"),
                                   own_pay_sum=D("80000"), lists=100, lists_passed=96, confirmed_flags=1)
    return perf.Inputs(code, **(base | kw))  # type: ignore[arg-type]


def test_performance_score_by_hand() -> None:
    # peers of level 3: A (Σ RW 110 / 100) and B (Σ RW 90 / 100): CMI 1.0000
    a, b = perf.evaluate([_inputs("A"), _inputs("B", weight_sum=D("90"))])
    pts = {c["component"]: (c["value"], c["points"]) for c in a.components}
    # qc 0.96: (0.96 − 0.90) / 0.10 × 20 = 12.00
    assert pts["qc_pass_rate"] == ("0.9600", "12.00")
    # 入组率 0.95: (0.95 − 0.90) / 0.09 × 15 = 8.33
    assert pts["grouping_rate"] == ("0.9500", "8.33")
    # CMI 1.1 vs peers 1.0 = 1.1 ≥ 1.00: all 10 points; B 0.9: (0.9 − 0.8) / 0.2 × 10 = 5.00
    assert pts["cmi_vs_peers"] == ("1.1000", "10.00")
    assert {c["component"]: c["points"] for c in b.components}["cmi_vs_peers"] == "5.00"
    # outliers 0.10 (lower better, full 0.05, zero 0.20): (0.10 − 0.20) / (0.05 − 0.20) × 10 = 6.67
    assert pts["outlier_share"] == ("0.1000", "6.67")
    assert pts["special_case_share"] == ("0.0200", "5.00")  # below 0.05: full
    # confirmed flags 0.01: (0.01 − 0.05) / (0 − 0.05) × 20 = 16.00
    assert pts["confirmed_flag_rate"] == ("0.0100", "16.00")
    # readmissions 0.04: (0.04 − 0.10) / (0.02 − 0.10) × 10 = 7.50; self-pay 0.08: 7.00
    assert pts["readmission_rate_31"] == ("0.0400", "7.50") and pts["self_pay_ratio"] == ("0.0800", "7.00")
    # Σ = 12 + 8.33 + 10 + 6.67 + 5 + 16 + 7.5 + 7 = 72.50 of 100
    assert a.score == D("72.50")
    # deposit: (72.50 − 60) / (90 − 60) = 0.4167
    assert a.deposit_return_share == D("0.4167")


def test_unmeasured_components_are_left_out_and_the_deposit_bands() -> None:
    [h] = perf.evaluate([_inputs("A", lists=0, lists_passed=0)])
    # without lists the 20 quality points are left out: 60.50 of 80 = 75.63
    assert h.score == D("75.63")
    p = perf.DEFAULT
    assert perf.deposit_return_share(D("90"), p) == 1 and perf.deposit_return_share(D("59.99"), p) == 0
    assert perf.deposit_return_share(D("75"), p) == D("0.5000")


def test_parameters_are_checked_and_keep_defaults() -> None:
    p = perf.parse_parameters({"components": {"qc_pass_rate": {"weight": "40"}}, "deposit_full_score": "80"})
    assert p.bands["qc_pass_rate"].weight == 40 and p.bands["qc_pass_rate"].zero == D("0.90")
    assert p.deposit_full_score == 80 and p.bands["grouping_rate"] == perf.DEFAULT.bands["grouping_rate"]
    with pytest.raises(Invalid) as e:
        perf.parse_parameters({"components": {"doctor_cap": {"weight": "1"}}})
    assert e.value.field == "components.doctor_cap"
    with pytest.raises(Invalid):
        perf.parse_parameters({"deposit_full_score": "50", "deposit_zero_score": "60"})


def test_a_value_on_the_bands_zero_scores_zero_points_never_minus_zero() -> None:
    from services.gateway.domain.performance import Band
    lower_is_better = Band(Decimal(10), full=Decimal(0), zero=Decimal("0.3"))
    assert str(lower_is_better.points(Decimal("0.3"))) == "0.00"
    assert str(lower_is_better.points(Decimal(0))) == "10.00"
