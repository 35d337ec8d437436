"""The grouping algorithm (scheme README, "Evaluation algorithm").

Two paths share input preparation (type checks, code translation, missing numbers,
validation) and the compiled rule predicates:

* the fast path walks a precompiled plan of nested tuples and returns a cached, immutable
  `GroupResult` per DRG, so a grouped case allocates little more than its `CaseContext`;
* the traced path walks the same MDC/ADRG/DRG order but explains each rule node and
  records a `Trace`. Its results equal the fast path's (asserted by the tests).

Input handling (the engine never raises for any case):

* `case` must be a mapping; anything else gives CHECK_FAILED.
* `diagnoses` / `procedures`: a list or tuple of strings. Missing or null counts as empty
  (an empty diagnosis list then fails validation). Any other type, or any non-string code,
  gives CHECK_FAILED. Codes are used verbatim (no trimming or case folding).
* `sex`, `age`, `age_days`, `birth_weight`: an int or null. Any other type (including
  bool, float and numeric strings such as "1") gives CHECK_FAILED.
* `los` (length of stay, days): read only by the `los_*` conditions of local schemes. An int
  is used; anything else counts as unknown (null), so the national rules, which never read
  it, group such a case as before.
* These type checks run first, before code translation: a wrongly typed record cannot be
  translated meaningfully.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .rules import Rule
from .trace import (
    CcAnalysis,
    CcFinding,
    DrgStep,
    Evidence,
    MdcStep,
    Names,
    Trace,
    Translation,
)
from .validation import CHECKS

if TYPE_CHECKING:  # pragma: no cover
    from .scheme import Scheme


class GroupStatus(StrEnum):
    SUCCESS = "SUCCESS"  # 分组成功
    QY = "QY"  # 歧义病案
    FAIL = "FAIL"  # 无法入组
    CHECK_FAILED = "CHECK_FAILED"  # 信息校验不通过
    ZD_NOT_MAPPING = "ZD_NOT_MAPPING"  # 诊断不能转换为分组器支持的编码
    SS_NOT_MAPPING = "SS_NOT_MAPPING"  # 手术操作不能转换为分组器支持的编码


GROUPED_STATUSES = frozenset({GroupStatus.SUCCESS, GroupStatus.QY})


@dataclass(frozen=True, slots=True)
class GroupResult:
    """Outcome of grouping one case. Failed cases carry mdc/adrg/drg `0000`/`00`/`0000`."""

    mdc: str
    adrg: str
    drg: str
    status: GroupStatus
    drg_name: str | None = None
    trace: Trace | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def grouped(self) -> bool:
        return self.status in GROUPED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mdc": self.mdc,
            "adrg": self.adrg,
            "drg": self.drg,
            "status": self.status.value,
        }
        if self.trace is not None:
            d["trace"] = self.trace.to_dict()
        return d


class CaseContext:
    """Per-case values read by the rule predicates.

    dx: diagnoses (principal first); px: procedures; pdx / mpx: principal diagnosis / main
    procedure or None; sex, age, age_days, bw, los: ints or None; mcc / cc: has_mcc / has_cc,
    None until a rule first asks (so they are computed at most once per case).
    """

    __slots__ = ("dx", "px", "pdx", "mpx", "sex", "age", "age_days", "bw", "los", "mcc", "cc")

    def __init__(self, dx, px, sex, age, age_days, bw, los=None):
        self.dx = dx
        self.px = px
        self.pdx = dx[0] if dx else None
        self.mpx = px[0] if px else None
        self.sex = sex
        self.age = age
        self.age_days = age_days
        self.bw = bw
        self.los = los
        self.mcc = None
        self.cc = None


def make_cc_predicates(
    cc: Mapping[str, str], mcc: Mapping[str, str], exclusion: Mapping[str, str]
):
    """Build the lazy has_mcc / has_cc predicates (README "CC / MCC with exclusion")."""
    excl_get = exclusion.get

    def make(table: Mapping[str, str], slot: str):
        get = table.get

        def compute(c: CaseContext) -> bool:
            dx = c.dx
            if len(dx) < 2:
                return False
            t = excl_get(dx[0])
            for s in dx[1:]:
                ts = get(s)
                # Counted unless the principal has a table and it is the code's table.
                if ts is not None and ts != t:
                    return True
            return False

        if slot == "mcc":

            def has_mcc(c: CaseContext) -> bool:
                v = c.mcc
                if v is None:
                    v = c.mcc = compute(c)
                return v

            return has_mcc

        def has_cc(c: CaseContext) -> bool:
            v = c.cc
            if v is None:
                v = c.cc = compute(c)
            return v

        return has_cc

    return make(mcc, "mcc"), make(cc, "cc")


_NO_CODES: tuple[str, ...] = ()


class Engine:
    """Compiled form of a scheme; built once by `Scheme` at load time."""

    def __init__(self, scheme: Scheme):
        self.scheme = scheme
        ev = scheme.evaluation
        self.zero_missing = ev.missing_numbers == "zero"
        self.drop_empty = ev.mapped_empty_codes == "drop"
        self.checks = tuple((name, CHECKS[name].test) for name in ev.validation)
        self.dmap = scheme.diagnosis_map
        self.pmap = scheme.procedure_map
        no = scheme.no_group_result
        self.failed = {
            st: GroupResult(no, "00", no, st)
            for st in (
                GroupStatus.FAIL,
                GroupStatus.CHECK_FAILED,
                GroupStatus.ZD_NOT_MAPPING,
                GroupStatus.SS_NOT_MAPPING,
            )
        }
        self.names = Names(
            mdc={m.code: m.name for m in scheme.mdcs},
            adrg={a.code: a.name for a in scheme.adrgs.values()},
            drg={d.code: d.name for d in scheme.drgs.values()},
            diagnosis=scheme.diagnosis_names,
            procedure=scheme.procedure_names,
            region={lid: name for m in scheme.mdcs for lid, name in m.regions},
        )
        self.plan = self._build_plan()

    # ------------------------------------------------------------------ plan

    def _build_plan(self):
        """Nested tuples: ((entry_pred, ((adrg_pred, ((drg_pred, result), ...), fallback), ...)), ...)

        An enabled ambiguous (QY) step is inserted as a pseudo-ADRG at its position, whose
        only "DRG" always holds and returns the QY result.
        """
        s = self.scheme
        plan = []
        for m in s.mdcs:
            steps = []
            for code in m.adrgs:
                a = s.adrgs[code]
                drgs = tuple(
                    (s.drgs[d].rule.pred, self._success(m.code, a.code, s.drgs[d].code, s.drgs[d].name))
                    for d in a.drgs
                )
                fallback = self._success(m.code, a.code, a.code, a.name)
                steps.append((a.rule.pred, drgs, fallback))
            amb = m.ambiguous
            if amb is not None and amb.enabled:
                qy = GroupResult(m.code, "QY", amb.drg, GroupStatus.QY, "歧义病案")
                steps.insert(amb.position, (amb.rule.pred, ((_true, qy),), qy))
            plan.append((m.entry.pred, tuple(steps)))
        return tuple(plan)

    @staticmethod
    def _success(mdc: str, adrg: str, drg: str, name: str) -> GroupResult:
        return GroupResult(mdc, adrg, drg, GroupStatus.SUCCESS, name)

    # ------------------------------------------------------------------ preparation

    def prepare(self, case: Any, mapped: bool, tr: Trace | None) -> CaseContext | GroupResult:
        """Type checks, code translation, missing numbers and validation.

        Returns the case context, or the failed result when the case stops here. `tr`
        (traced path only) receives translations and the reason for stopping.
        """
        failed = self.failed
        if type(case) is not dict and not isinstance(case, Mapping):
            if tr is not None:
                tr.input_problem = f"病案不是键值对象（{type(case).__name__}）"
            return failed[GroupStatus.CHECK_FAILED]
        get = case.get
        dx = get("diagnoses")
        px = get("procedures")
        sex = get("sex")
        age = get("age")
        age_days = get("age_days")
        bw = get("birth_weight")

        problem = None
        if type(dx) is not list:
            if dx is None:
                dx = _NO_CODES
            elif type(dx) is not tuple:
                problem = "diagnoses 不是编码列表"
        if type(px) is not list:
            if px is None:
                px = _NO_CODES
            elif type(px) is not tuple:
                problem = "procedures 不是编码列表"
        if problem is None:
            for code in dx:
                if type(code) is not str:
                    problem = f"诊断编码 {code!r} 不是字符串"
                    break
            for code in px:
                if type(code) is not str:
                    problem = f"手术操作编码 {code!r} 不是字符串"
                    break
        if problem is None:
            for key, v in (("sex", sex), ("age", age), ("age_days", age_days), ("birth_weight", bw)):
                if v is not None and type(v) is not int:
                    problem = f"{key} 的值 {v!r} 不是整数"
                    break
        if problem is not None:
            if tr is not None:
                tr.input_problem = problem
            return failed[GroupStatus.CHECK_FAILED]

        if mapped:
            dx = self._translate(dx, self.dmap, "diagnosis", tr)
            if dx is None:
                return failed[GroupStatus.ZD_NOT_MAPPING]
            px = self._translate(px, self.pmap, "procedure", tr)
            if px is None:
                return failed[GroupStatus.SS_NOT_MAPPING]

        if self.zero_missing:
            # Quanzhou: a null number is 0 before validation and grouping.
            if age is None:
                age = 0
            if age_days is None:
                age_days = 0
            if bw is None:
                bw = 0

        for name, test in self.checks:
            if not test(sex, age, age_days, bw, dx):
                if tr is not None:
                    tr.failed_check = name
                return failed[GroupStatus.CHECK_FAILED]
        los = get("los")
        return CaseContext(dx, px, sex, age, age_days, bw, los if type(los) is int else None)

    def _translate(self, codes, table: Mapping[str, str], kind: str, tr: Trace | None):
        """One-step translation of every position; None when a code is not in the map."""
        out: list[str] = []
        append = out.append
        get = table.get
        for i, code in enumerate(codes):
            t = get(code)
            if tr is not None and t != code:
                tr.translations.append(Translation(kind, i, code, t))
            if t is None:
                return None
            append(t)
        if self.drop_empty and "" in out:
            out = [t for t in out if t]
        return out

    # ------------------------------------------------------------------ fast path

    def group(self, case: Any, mapped: bool) -> GroupResult:
        c = self.prepare(case, mapped, None)
        if type(c) is GroupResult:
            return c
        for entry, adrgs in self.plan:
            if entry(c):
                for pred, drgs, fallback in adrgs:
                    if pred(c):
                        for dpred, result in drgs:
                            if dpred(c):
                                return result
                        return fallback
        return self.failed[GroupStatus.FAIL]

    # ------------------------------------------------------------------ traced path

    def group_traced(self, case: Any, mapped: bool) -> GroupResult:
        s = self.scheme
        tr = Trace(
            scheme=s.id,
            code_mode="mapped" if mapped else "raw",
            validation=tuple(name for name, _ in self.checks),
            names=self.names,
        )
        c = self.prepare(case, mapped, tr)
        if isinstance(c, GroupResult):
            if c.status is GroupStatus.ZD_NOT_MAPPING:
                tr.failure = "诊断编码不能转换为分组器支持的编码"
            elif c.status is GroupStatus.SS_NOT_MAPPING:
                tr.failure = "手术操作编码不能转换为分组器支持的编码"
            else:
                tr.failure = "信息校验不通过"
            return self._finish(c, tr)

        cc = self._cc_analysis(c)
        special = {
            "has_mcc": tuple(cc.counted("MCC")),
            "has_cc": tuple(cc.counted("CC")),
        }
        for m in s.mdcs:
            ok, entry_ev = explain(m.entry, c, special)
            if not ok:
                continue
            steps: list[tuple[str, Any]] = [("adrg", code) for code in m.adrgs]
            amb = m.ambiguous
            if amb is not None and amb.enabled:
                steps.insert(amb.position, ("qy", amb))
            tested = 0
            for kind, item in steps:
                if kind == "qy":
                    ok, ev = explain(item.rule, c, special)
                    if ok:
                        tr.mdcs.append(MdcStep(m.code, tuple(entry_ev), "ambiguous", tested))
                        tr.ambiguous_evidence = tuple(ev)
                        res = GroupResult(m.code, "QY", item.drg, GroupStatus.QY, "歧义病案")
                        return self._finish(res, tr)
                    continue
                tested += 1
                a = s.adrgs[item]
                ok, ev = explain(a.rule, c, special)
                if not ok:
                    continue
                tr.mdcs.append(MdcStep(m.code, tuple(entry_ev), "chosen", tested))
                tr.adrg_evidence = tuple(ev)
                tr.adrg_rule = a.rule.text()
                tr.cc = cc
                for dcode in a.drgs:
                    d = s.drgs[dcode]
                    ok, dev = explain(d.rule, c, special)
                    tr.drg_steps.append(DrgStep(d.code, d.rule.text(), ok, tuple(dev)))
                    if ok:
                        res = GroupResult(m.code, a.code, d.code, GroupStatus.SUCCESS, d.name)
                        return self._finish(res, tr)
                tr.drg_is_adrg = True
                res = GroupResult(m.code, a.code, a.code, GroupStatus.SUCCESS, a.name)
                return self._finish(res, tr)
            tr.mdcs.append(MdcStep(m.code, tuple(entry_ev), "fell_through", tested))

        if tr.mdcs:
            entered = "、".join(step.mdc for step in tr.mdcs)
            tr.failure = f"进入了 {entered}，但没有符合条件的 ADRG"
        else:
            tr.failure = f"主诊断 {c.pdx!r} 不满足任何 MDC 的入组条件"
        return self._finish(self.failed[GroupStatus.FAIL], tr)

    @staticmethod
    def _finish(res: GroupResult, tr: Trace) -> GroupResult:
        tr.status, tr.mdc, tr.adrg, tr.drg = res.status.value, res.mdc, res.adrg, res.drg
        return GroupResult(res.mdc, res.adrg, res.drg, res.status, res.drg_name, tr)

    def cc_analysis(self, case: Any, mapped: bool) -> CcAnalysis | None:
        c = self.prepare(case, mapped, None)
        return None if isinstance(c, GroupResult) else self._cc_analysis(c)

    def _cc_analysis(self, c: CaseContext) -> CcAnalysis:
        s = self.scheme
        pdx = c.pdx
        t = s.cc_exclusion.get(pdx) if pdx is not None else None
        findings = []
        for i, code in enumerate(c.dx[1:], start=1):
            for level, table in (("MCC", s.mcc), ("CC", s.cc)):
                ts = table.get(code)
                if ts is not None:
                    findings.append(CcFinding(i, code, level, ts, t is not None and ts == t))
        return CcAnalysis(pdx, t, tuple(findings))


def _true(_c) -> bool:
    return True


def explain(rule: Rule, c: CaseContext, special: Mapping[str, tuple]) -> tuple[bool, list[Evidence]]:
    """Evaluate `rule` node by node, returning its value and the leaves that made it true.

    Combinators short-circuit in the same order as the compiled predicates; leaves call the
    compiled leaf predicate, so both paths agree by construction.
    """
    op = rule.op
    if op == "true":
        return True, []
    if op == "all":
        out: list[Evidence] = []
        for ch in rule.children:
            ok, ev = explain(ch, c, special)
            if not ok:
                return False, []
            out.extend(ev)
        return True, out
    if op == "any":
        for ch in rule.children:
            ok, ev = explain(ch, c, special)
            if ok:
                return True, ev
        return False, []
    if op == "not":
        child = rule.children[0]
        ok, _ = explain(child, c, special)
        if ok:
            return False, []
        return True, [Evidence("not", child.text(), (), negated=True)]
    if not rule.pred(c):
        return False, []
    if op in special:
        matched = special[op]
    else:
        cond = rule.condition
        matched = cond.evidence(rule.value, c) if cond is not None and cond.evidence else ()
    return True, [Evidence(op, rule.arg, tuple(matched))]
