"""Grouping trace: why a case landed where it did.

The engine fills a `Trace` only when asked (`Scheme.group(..., trace=True)`); the fast path
never builds one. `Trace.to_dict()` is the machine-readable form, `Trace.render()` a list of
Chinese lines for people (MDC/ADRG/DRG names, diagnosis and procedure names from the
scheme dictionaries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import orjson

from .validation import CHECKS


@dataclass(frozen=True)
class Names:
    """Name tables used to render a trace."""

    mdc: Mapping[str, str]
    adrg: Mapping[str, str]
    drg: Mapping[str, str]
    diagnosis: Mapping[str, str]
    procedure: Mapping[str, str]
    region: Mapping[str, str]  # MDCZ region list id -> region name


@dataclass(frozen=True)
class Evidence:
    """A leaf condition that held, with the codes or values that made it hold."""

    condition: str
    argument: Any  # list id, number or prefix as written in the rule
    matched: tuple[str, ...] = ()
    negated: bool = False  # a `not` node: `argument` is the rule text that did NOT hold


@dataclass(frozen=True)
class Translation:
    """One code position in mapped mode. `target` is None when the code is not in the map."""

    kind: str  # "diagnosis" | "procedure"
    position: int
    source: str
    target: str | None


@dataclass(frozen=True)
class MdcStep:
    """An MDC whose entry rule held."""

    mdc: str
    entry: tuple[Evidence, ...]
    outcome: str  # "chosen" | "fell_through" | "ambiguous"
    adrgs_tested: int


@dataclass(frozen=True)
class CcFinding:
    """A secondary diagnosis that is on the MCC or CC list."""

    position: int  # index in the diagnosis list (1 = first secondary)
    code: str
    level: str  # "MCC" | "CC"
    table: str  # the code's exclusion table
    excluded: bool  # removed by the principal's exclusion table


@dataclass(frozen=True)
class CcAnalysis:
    principal: str | None
    principal_table: str | None
    findings: tuple[CcFinding, ...]

    @property
    def has_mcc(self) -> bool:
        return any(f.level == "MCC" and not f.excluded for f in self.findings)

    @property
    def has_cc(self) -> bool:
        return any(f.level == "CC" and not f.excluded for f in self.findings)

    def counted(self, level: str) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings if f.level == level and not f.excluded)


@dataclass(frozen=True)
class DrgStep:
    """One DRG split rule tested, in order."""

    drg: str
    rule: str
    matched: bool
    evidence: tuple[Evidence, ...] = ()


@dataclass
class Trace:
    """Everything the engine decided for one case, in evaluation order."""

    scheme: str
    code_mode: str
    status: str = ""
    mdc: str = ""
    adrg: str = ""
    drg: str = ""
    input_problem: str | None = None
    translations: list[Translation] = field(default_factory=list)
    validation: tuple[str, ...] = ()
    failed_check: str | None = None
    mdcs: list[MdcStep] = field(default_factory=list)
    adrg_evidence: tuple[Evidence, ...] = ()
    adrg_rule: str = ""
    ambiguous_evidence: tuple[Evidence, ...] = ()
    drg_steps: list[DrgStep] = field(default_factory=list)
    drg_is_adrg: bool = False  # no DRG rule held: the ADRG itself is the result
    cc: CcAnalysis | None = None
    failure: str | None = None
    names: Names | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> bytes:
        """The machine-readable trace as JSON (every field but the name tables)."""
        return orjson.dumps(self, option=orjson.OPT_PASSTHROUGH_DATACLASS, default=_json_ready)

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_json())  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ rendering

    def render(self) -> list[str]:
        """Human-readable Chinese lines."""
        n = self.names or Names({}, {}, {}, {}, {}, {})
        mode = "编码映射后分组" if self.code_mode == "mapped" else "原始编码分组"
        lines = [f"分组方案 {self.scheme}，{mode}"]

        def dx(code: str | None) -> str:
            return _named(code, n.diagnosis)

        def px(code: str | None) -> str:
            return _named(code, n.procedure)

        if self.input_problem:
            lines.append(f"输入数据不合格：{self.input_problem}")
        for t in self.translations:
            kind = "诊断" if t.kind == "diagnosis" else "手术操作"
            look = dx if t.kind == "diagnosis" else px
            if t.target is None:
                table = "诊断映射表" if t.kind == "diagnosis" else "手术操作映射表"
                lines.append(f"编码转换失败：{kind}第{t.position + 1}位 {t.source!r} 不在{table}中")
            elif t.target == "":
                lines.append(f"编码转换：{kind} {look(t.source)} → 空编码")
            else:
                lines.append(f"编码转换：{kind} {look(t.source)} → {look(t.target)}")
        if self.failed_check:
            desc = CHECKS[self.failed_check].description if self.failed_check in CHECKS else ""
            lines.append(f"信息校验不通过：{self.failed_check}（{desc}）")

        for step in self.mdcs:
            why = "；".join(_evidence_text(e, n) for e in step.entry) or "入组条件成立"
            lines.append(f"进入 {_named(step.mdc, n.mdc)}：{why}")
            if step.outcome == "fell_through":
                lines.append(
                    f"  {step.mdc} 的 {step.adrgs_tested} 个 ADRG 均不符合，转入下一个 MDC"
                )
            elif step.outcome == "ambiguous":
                why = "；".join(_evidence_text(e, n) for e in self.ambiguous_evidence)
                lines.append(f"  歧义病案 {self.drg}：{why}")

        if self.adrg and self.adrg != "QY" and self.status in ("SUCCESS",):
            why = "；".join(_evidence_text(e, n) for e in self.adrg_evidence) or "无条件"
            lines.append(f"  入组 ADRG {_named(self.adrg, n.adrg)}：{why}（规则 {self.adrg_rule}）")
            for s in self.drg_steps:
                mark = "符合" if s.matched else "不符合"
                why = "；".join(_evidence_text(e, n) for e in s.evidence)
                why = f"（{why}）" if why else ""
                lines.append(f"  DRG {_named(s.drg, n.drg)}：规则 {s.rule} {mark}{why}")
            if self.drg_is_adrg:
                lines.append(f"  没有 DRG 细分规则成立，以 ADRG {self.adrg} 作为结果")
            if self.cc is not None:
                lines.extend(self._render_cc(dx))

        if self.failure:
            lines.append(f"未能入组：{self.failure}")
        lines.append(f"结果：{self.status} {self.mdc} / {self.adrg} / {self.drg}")
        return lines

    def _render_cc(self, dx) -> list[str]:
        cc = self.cc
        assert cc is not None
        out: list[str] = []
        table = cc.principal_table
        tname = f"排除表 {table}" if table is not None else "无排除表"
        out.append(f"  主诊断 {dx(cc.principal)}（{tname}）")
        level_name = {"MCC": "严重并发症或合并症 MCC", "CC": "并发症或合并症 CC"}
        for f in cc.findings:
            if f.excluded:
                out.append(
                    f"  {dx(f.code)} 属于 {f.level}（排除表 {f.table}），"
                    f"被主诊断的排除表 {table} 排除，不计入"
                )
            else:
                out.append(
                    f"  {dx(f.code)} 计为{level_name[f.level]}（该编码的排除表 {f.table}）"
                )
        if not cc.findings:
            out.append("  其他诊断中没有 MCC 或 CC")
        return out


_FIELDS: dict[type, tuple[str, ...]] = {}


def _json_ready(v: Any) -> dict[str, Any]:
    """orjson's fallback for the trace's dataclasses: their fields, one level at a time (orjson
    does the rest), without the name tables; the CC analysis also says what it counted."""
    names = _FIELDS.get(type(v))
    if names is None:
        if not is_dataclass(v):
            raise TypeError(f"{type(v).__name__} is not JSON serialisable")
        names = _FIELDS[type(v)] = tuple(f.name for f in fields(v) if f.name != "names")
    d = {n: getattr(v, n) for n in names}
    if isinstance(v, CcAnalysis):
        d["has_mcc"], d["has_cc"] = v.has_mcc, v.has_cc
    return d


def _named(code: str | None, names: Mapping[str, str]) -> str:
    if code is None:
        return "（无）"
    name = names.get(code)
    return f"{code} {name}" if name else code


def _evidence_text(e: Evidence, n: Names) -> str:
    c = e.condition
    if e.negated:
        return f"不满足 {e.argument}"
    codes = ", ".join(
        _named(x, n.procedure if "px" in c else n.diagnosis) for x in e.matched
    )
    if c == "pdx_in":
        return f"主诊断 {codes} ∈ {e.argument}"
    if c == "main_px_in":
        return f"主手术 {codes} ∈ {e.argument}"
    if c == "any_dx_in":
        return f"诊断 {codes} ∈ {e.argument}"
    if c == "any_sec_dx_in":
        return f"其他诊断 {codes} ∈ {e.argument}"
    if c == "any_px_in":
        return f"手术 {codes} ∈ {e.argument}"
    if c == "any_dx_prefix":
        return f"诊断 {codes} 以 {e.argument!r} 开头"
    if c == "dx_regions_ge":
        regions = []
        for item in e.matched:
            lid, _, hit = item.partition(": ")
            regions.append(f"{n.region.get(lid, lid)}（{hit}）")
        return f"创伤部位 ≥ {e.argument['min']}：" + "、".join(regions)
    if c in ("has_mcc", "has_cc"):
        label = "MCC" if c == "has_mcc" else "CC"
        return f"伴 {label}：{codes}"
    facts = ", ".join(e.matched)
    return f"{c} {e.argument}（{facts}）" if facts else f"{c} {e.argument}"
