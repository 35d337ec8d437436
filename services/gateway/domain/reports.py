"""The bureau's reports (docs/domain.md §8, §10, §12): one shape, one renderer, three formats.

Pure. A report is a title, its scope and period, and sections; a section is a table (columns
with a Chinese label, rows of values). Every report is built from figures the routes gather
(indicator aggregates, statements, quality scores, flags, the special-case publication, payment
standards) by one builder each, and rendered one way:

- `render_html`: a printable Chinese page, every value escaped, no external assets (the styles
  are inline in the page: a bureau network has no internet and a report is printed or mailed);
- `table`: the same sections as one table (a `section` column, then the union of the
  sections' columns), which `shared.csvexport.to_csv` and `shared.xlsxexport.to_xlsx` write, so
  the CSV, the XLSX and the page carry the same rows.

No report has a per-doctor figure or column (§12: payment standards are never turned into a
per-doctor cap): reports are per region, hospital, level, department and group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

FEE_ITEMS = {  # 医疗收费项目 med_chrgitm 01–14 (settlement list, §3)
    "01": "床位费", "02": "诊察费", "03": "检查费", "04": "化验费", "05": "治疗费", "06": "手术费",
    "07": "护理费", "08": "卫生材料费", "09": "西药费", "10": "中药饮片费", "11": "中成药费",
    "12": "一般诊疗费", "13": "挂号费", "14": "其他费",
}
KINDS = {"feedback": "月度反馈", "bulletin": "数据工作组季度通报", "special-cases": "特例单议半年公示",
         "standards": "病组支付标准对比"}


@dataclass(frozen=True)
class Section:
    """One table of a report: `columns` are (key, Chinese label) pairs; rows map keys to values."""

    key: str
    title: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[Mapping[str, Any], ...]
    note: str = ""


@dataclass(frozen=True)
class Report:
    kind: str  # feedback | bulletin | special-cases | standards
    title: str
    period: str
    scope: str  # the region, or the hospital the report is for
    sections: tuple[Section, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)  # e.g. the statement version it reflects

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "period": self.period, "scope": self.scope,
                "meta": _plain(self.meta),
                "sections": [{"key": s.key, "title": s.title, "columns": [list(c) for c in s.columns],
                              "rows": [_plain(r) for r in s.rows], "note": s.note} for s in self.sections]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        return cls(d["kind"], d["title"], d["period"], d["scope"], tuple(
            Section(s["key"], s["title"], tuple((c[0], c[1]) for c in s["columns"]), tuple(s["rows"]), s.get("note", ""))
            for s in d["sections"]), d.get("meta") or {})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Decimal) else value


def table(report: Report) -> tuple[list[str], list[dict[str, Any]]]:
    """The report as one table (CSV, XLSX): `section`, then every section's columns in order."""
    columns = ["section"]
    for s in report.sections:
        columns += [k for k, _ in s.columns if k not in columns]
    rows = [{"section": s.key} | {k: r.get(k) for k, _ in s.columns} for s in report.sections for r in s.rows]
    return columns, rows


def column_keys(report: Report) -> set[str]:
    return {k for s in report.sections for k, _ in s.columns}


def column_labels(report: Report) -> set[str]:
    return {label for s in report.sections for _, label in s.columns}


_STYLE = """body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #999;padding:.25em .6em;text-align:left}td.n{text-align:right}
.meta{color:#555}.note{color:#555;font-size:.9em}@media print{body{margin:0}h2{page-break-after:avoid}}"""


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | Decimal) or (isinstance(value, str) and bool(_NUMBER.match(value)))


def render_html(report: Report) -> str:
    """The report as a printable Chinese page: one table per section, every value escaped."""
    meta = " · ".join(f"{_text(k)}：{_text(v)}" for k, v in report.meta.items())
    parts = [f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{_text(report.title)}</title>'
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{_text(report.title)}</h1>",
             f'<p class="meta">期间：{_text(report.period)} · 范围：{_text(report.scope)}'
             + (f" · {meta}" if meta else "") + "</p>"]
    for s in report.sections:
        parts.append(f'<section id="{_text(s.key)}"><h2>{_text(s.title)}</h2>')
        if s.rows:
            head = "".join(f"<th>{_text(label)}</th>" for _, label in s.columns)
            body = "".join("<tr>" + "".join(
                f'<td class="n">{_text(r.get(k))}</td>' if _numeric(r.get(k)) else f"<td>{_text(r.get(k))}</td>"
                for k, _ in s.columns) + "</tr>" for r in s.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            parts.append("<p>无数据。</p>")
        if s.note:
            parts.append(f'<p class="note">{_text(s.note)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


# ---------------------------------------------------------------- the builders

ITEM = (("item", "项目"), ("value", "数值"))


def _items(pairs: Sequence[tuple[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple({"item": label, "value": value} for label, value in pairs)


GROUP_COLUMNS = (("drg", "病组"), ("cases", "病例数"), ("cmi", "CMI"), ("average_cost", "次均费用"),
                 ("average_los", "平均住院日"), ("high_outliers", "高倍率"), ("low_outliers", "低倍率"),
                 ("payment_sum", "DRG/DIP支付"), ("paid_cost_sum", "按项目费用"), ("surplus", "盈亏"))
STATEMENT_LINES = {"cases": "病例数", "drg_payment": "DRG/DIP支付额", "outside_points_payment": "点数外支付",
                   "patient_share": "个人负担", "fund_due": "基金应付", "pre_settlement_share": "预结算比例",
                   "review_deductions": "审核扣款", "quality_deposit": "质量保证金（暂扣）",
                   "presettled": "本月预拨"}


def monthly_feedback(hospital: str, month: str, own: Mapping[str, Any] | None, region: Mapping[str, Any],
                     groups: Sequence[Mapping[str, Any]], rules: Mapping[str, int],
                     quality: Sequence[Mapping[str, Any]], statement: Mapping[str, Any] | None,
                     meta: Mapping[str, Any] | None = None) -> Report:
    """月度反馈 to one hospital (§8): its grouping (入组率, groups, CMI against the region), outliers,
    payment and 盈亏, the month's list quality (QC errors) and the monitoring flags by rule; only
    its own figures beside the region's totals."""
    o = own or {}
    grouping = _items([
        ("病例数", o.get("cases", 0)), ("入组病例", o.get("grouped", 0)), ("入组率", o.get("grouping_rate")),
        ("全区入组率", region.get("grouping_rate")), ("覆盖病组数", o.get("groups_covered", 0)),
        ("CMI", o.get("cmi")), ("全区CMI", region.get("cmi")), ("费用消耗指数", o.get("cost_index")),
        ("时间消耗指数", o.get("time_index")), ("平均住院日", o.get("average_los")),
        ("次均费用", o.get("average_cost")), ("自费比例", o.get("self_pay_ratio"))])
    outliers = _items([
        ("高倍率病例", o.get("high_outliers", 0)), ("高倍率占比", o.get("high_outlier_share")),
        ("低倍率病例", o.get("low_outliers", 0)), ("低倍率占比", o.get("low_outlier_share")),
        ("临界区占比", o.get("near_threshold_share")), ("特例单议病例", o.get("special_cases", 0)),
        ("15日再入院率", o.get("readmission_rate_15")), ("31日再入院率", o.get("readmission_rate_31"))])
    payment = _items([
        ("DRG/DIP支付", o.get("payment_sum")), ("按项目费用", o.get("paid_cost_sum")), ("盈亏", o.get("surplus")),
        ("盈亏率", o.get("surplus_rate")),
        *[(STATEMENT_LINES[k], v) for k, v in (statement or {}).items() if k in STATEMENT_LINES]])
    qc_rows = tuple({"month": q.get("month"), "lists": q.get("lists"), "passed": q.get("passed"),
                     "errors": _minus(q.get("lists"), q.get("passed")), "warnings": q.get("warnings"),
                     "pass_rate": q.get("pass_rate"), "timeliness": q.get("timeliness"),
                     "completeness": q.get("completeness")} for q in quality)
    return Report("feedback", f"{hospital} {month} 月度反馈", month, hospital, (
        Section("grouping", "一、分组情况", ITEM, grouping),
        Section("groups", "二、病组明细", GROUP_COLUMNS, tuple(groups)),
        Section("outliers", "三、高低倍率与特例", ITEM, outliers),
        Section("payment", "四、支付与盈亏", ITEM, payment,
                note="" if statement else "本月尚未预结算：支付为按病例计算的金额。"),
        Section("quality", "五、结算清单质控", (
            ("month", "月份"), ("lists", "上传清单"), ("passed", "合格"), ("errors", "质控错误"),
            ("warnings", "提示"), ("pass_rate", "合格率"), ("timeliness", "及时率"), ("completeness", "完整率")),
            qc_rows),
        Section("flags", "六、智能监控疑点（按规则）", (("rule", "规则"), ("flagged", "疑点病例")),
                tuple({"rule": r, "flagged": n} for r, n in sorted(rules.items()))),
    ), meta or {})


def _minus(a: Any, b: Any) -> int | None:
    return int(a) - int(b) if isinstance(a, int) and isinstance(b, int) else None


HOSPITAL_COLUMNS = (("hospital", "医疗机构"), ("level", "级别"), ("cases", "病例数"), ("cost_sum", "总费用"),
                    ("share", "费用占比"), ("average_cost", "次均费用"), ("payment_sum", "DRG/DIP支付"),
                    ("surplus", "盈亏"))
LEVEL_COLUMNS = (("level", "医院级别"), ("cases", "病例数"), ("average_los", "平均住院日"),
                 ("average_cost", "次均费用"), ("self_pay_ratio", "自费比例"), ("cmi", "CMI"))
LEVEL_NAMES = {0: "未知", 1: "一级", 2: "二级", 3: "三级"}


def quarterly_bulletin(region: str, quarter: str, fund: Mapping[str, Any], fees: Mapping[str, Decimal],
                       hospitals: Sequence[Mapping[str, Any]], levels: Sequence[Mapping[str, Any]],
                       total: Mapping[str, Any]) -> Report:
    """数据工作组季度通报 (§12): the fund overview (budget, pre-settled, point value), spending by
    fee item (01–14), the cost distribution per hospital, and average LOS, average cost and
    self-pay ratio by hospital level."""
    all_fees = sum(fees.values(), Decimal(0))
    fee_rows = tuple({"item": code, "name": FEE_ITEMS[code], "amount": _yuan(fees.get(code, Decimal(0))),
                      "share": _share(fees.get(code, Decimal(0)), all_fees)} for code in FEE_ITEMS)
    cost_total = Decimal(str(total.get("cost_sum") or 0))
    hospital_rows = tuple({"hospital": h["key"], "level": LEVEL_NAMES.get(int(h.get("level") or 0), "未知"),
                           "cases": h["cases"], "cost_sum": h["cost_sum"],
                           "share": _share(Decimal(h["cost_sum"]), cost_total), "average_cost": h["average_cost"],
                           "payment_sum": h["payment_sum"], "surplus": h["surplus"]} for h in hospitals)
    level_rows = tuple({"level": LEVEL_NAMES.get(int(v["key"] or 0), "未知"), **{k: v.get(k) for k, _ in LEVEL_COLUMNS[1:]}}
                       for v in levels)
    return Report("bulletin", f"{region} {quarter} 数据工作组季度通报", quarter, region, (
        Section("fund", "一、基金运行概况", ITEM, _items([
            ("年度预算", fund.get("budget")), ("本季度预拨", fund.get("presettled")),
            ("本季度基金应付", fund.get("fund_due")), ("累计预拨（年内）", fund.get("presettled_year")),
            ("预算执行率", fund.get("execution_rate")), ("暂定点值", fund.get("point_value")),
            ("病例数", total.get("cases")), ("DRG/DIP支付", total.get("payment_sum")),
            ("盈亏", total.get("surplus"))])),
        Section("fees", "二、按收费项目的费用", (("item", "编码"), ("name", "收费项目"), ("amount", "金额"),
                                                ("share", "占比")), fee_rows),
        Section("hospitals", "三、各医疗机构费用分布", HOSPITAL_COLUMNS, hospital_rows),
        Section("levels", "四、按医院级别", LEVEL_COLUMNS, level_rows),
    ))


def _yuan(value: Decimal) -> str:
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _share(part: Decimal, whole: Decimal) -> str | None:
    if not whole:
        return None
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


PUBLICATION_COLUMNS = (("hospital_code", "医疗机构"), ("applications", "申请"), ("pending", "待审"),
                       ("appealed", "申诉中"), ("pay_by_item", "按项目付费"), ("adjust_standard", "调整支付标准"),
                       ("rejected", "不予通过"), ("adjusted_amount", "调整金额"))


def special_case_publication(half: str, scope: str, rows: Sequence[Mapping[str, Any]]) -> Report:
    """特例单议半年公示 (§10): review's counts and outcomes per hospital, as review computes them."""
    return Report("special-cases", f"{scope} {half} 特例单议公示", half, scope, (
        Section("hospitals", "特例单议病例数与结果（按医疗机构）", PUBLICATION_COLUMNS, tuple(rows)),))


STANDARD_COLUMNS = (("level", "医院级别"), ("left", "甲方支付标准"), ("right", "乙方支付标准"),
                    ("difference", "差额（元）"), ("difference_rate", "差异率"))


def standards_comparison(drg: str, left: Mapping[str, Any], right: Mapping[str, Any]) -> Report:
    """One group's payment standard under two policies (two regions, or two versions of one):
    per hospital level, the difference right − left in yuan and as a share of left (§12)."""
    def per_level(side: Mapping[str, Any]) -> dict[int, Decimal]:
        return {int(s["level"]): Decimal(s["standard"]) for s in side.get("standards") or [] if s.get("standard")}

    a, b = per_level(left), per_level(right)
    rows = []
    for level in sorted(a.keys() | b.keys()):
        x, y = a.get(level), b.get(level)
        diff = None if x is None or y is None else y - x
        rows.append({"level": LEVEL_NAMES.get(level, str(level)), "left": x, "right": y, "difference": diff,
                     "difference_rate": None if diff is None else _share(diff, x or Decimal(0))})

    def label(side: Mapping[str, Any]) -> str:
        return f"{side.get('region')} {side.get('policy_id')} v{side.get('version')}"

    return Report("standards", f"病组 {drg} 支付标准对比", f"{label(left)} / {label(right)}", drg, (
        Section("policies", "对比口径", (("side", "对比方"), ("region", "地区"), ("policy", "政策"),
                                        ("version", "版本"), ("method", "付费方式"), ("weight", "权重/分值")),
                tuple({"side": side, "region": s.get("region"), "policy": s.get("policy_id"),
                       "version": s.get("version"), "method": s.get("method"), "weight": s.get("weight")}
                      for side, s in (("甲", left), ("乙", right)))),
        Section("standards", "支付标准（元）", STANDARD_COLUMNS, tuple(rows),
                note="差额 = 乙 − 甲；差异率 = 差额 / 甲。支付标准按医疗机构结算，不分解到医师。"),
    ))
