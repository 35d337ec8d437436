"""Quality control (质控) of a national settlement list: every problem, with its field path.

What for: the bureau rejects a list with blocking errors and stores and counts its warnings
(domain.md §3 "Quality control"); quality.py scores hospitals on these results. Pure: plain
functions over the parsed `SettlementList`, no web, bus or database imports.

Each rule is a small function with a STABLE code. `check` runs them all and never stops at the
first problem. Severity "error" = blocking (the list is rejected), "warning" = stored and
counted. Category says which quality score a problem counts against (quality.py).

| code        | sev.    | category     | rule |
|-------------|---------|--------------|------|
| QC-REQ-001  | error   | completeness | a required `setlinfo` field is missing (4101 and 4101A have their own sets) |
| QC-REQ-002  | error   | completeness | 4101: no fee lines (`iteminfo`) |
| QC-REQ-003  | error   | completeness | 4101: a fee line without its amount (`iteminfo[i].amt`) |
| QC-VAL-001  | error   | accuracy     | `gend` not one of 1, 2, 0, 9 (GB/T 2261.1) |
| QC-VAL-002  | error   | accuracy     | `dscg_way` not one of 1, 2, 3, 4, 5, 9 |
| QC-DICT-001 | error   | accuracy     | diagnosis code not in the ICD-10 医保版 dictionary |
| QC-DICT-002 | error   | accuracy     | procedure code not in the ICD-9-CM-3 医保版 dictionary |
| QC-SEX-001  | error   | accuracy     | diagnosis restricted to the other sex (`SEX_RULES`) |
| QC-AGE-001  | warning | accuracy     | age-restricted diagnosis outside its ages (`AGE_RULES`: P00–P96 at age ≥ 1) |
| QC-NWB-001  | error   | accuracy     | age 0 (under one year) without `nwb_age` (age in days) |
| QC-NWB-002  | error   | accuracy     | `nwb_age` ≤ 28 days without `nwb_bir_wt` (birth weight) |
| QC-NWB-003  | warning | accuracy     | a newborn weight outside 100–9999 g |
| QC-DATE-001 | error   | accuracy     | admission (`adm_time`) after discharge (`dscg_time`) |
| QC-DATE-002 | error   | accuracy     | `act_ipt_days` ≠ calendar days between admission and discharge |
| QC-DATE-003 | error   | accuracy     | birth date (`brdy`) after admission |
| QC-DATE-004 | error   | accuracy     | `setl_begn_date` after `setl_end_date` |
| QC-DATE-005 | error   | accuracy     | a date of the list after today (+ a tolerance): `DateWindow` |
| QC-DATE-006 | error   | accuracy     | a date of the stay before the earliest year: `DateWindow` |
| QC-FEE-001  | error   | accuracy     | `med_chrgitm` not one of the 14 categories 01–14 |
| QC-FEE-002  | error   | accuracy     | fee categories do not sum to `medfee_sumamt` (tolerance 0.01 yuan) |
| QC-FEE-003  | warning | accuracy     | the same fee category on several lines |
| QC-DX-001   | error   | accuracy     | not exactly one principal diagnosis (`maindiag_flag` "1") |
| QC-DX-002   | warning | accuracy     | the same diagnosis code twice |
| QC-DX-003   | error   | accuracy     | principal diagnosis is an external cause (V01–Y98) |
| QC-DX-004   | warning | accuracy     | principal diagnosis is a symptom/sign code (R00–R99) |
| QC-PX-001   | warning | accuracy     | the same procedure code twice |
| QC-PX-002   | warning | accuracy     | procedures present but not exactly one main one (`oprn_oprt_type` "1") |

Conventions (documented choices):

* Only Western diagnoses (`diag_type` 1 or blank) are checked against the ICD-10 dictionary
  and the sex/age/principal tables; TCM diagnoses (2, 3) use another classification.
* Codes are looked up verbatim (dagger/asterisk pairs as one code, `A17.000+G01*`, as the
  dictionary writes them). Grey codes (灰码) need a list the scheme does not ship: not checked.
* Newborn codes P00–P96 after the first year are a WARNING, not an error: ICD-10 allows
  perinatal codes later in life for conditions that began in the perinatal period.
* Length of stay: `act_ipt_days` = discharge date − admission date in calendar days (times
  of day ignored). A same-day stay may be reported as 0 or 1 (both are in use).
* The sex, age and principal-diagnosis tables are data (`SEX_RULES`, `AGE_RULES`,
  `PRINCIPAL_RULES`, `REQUIRED_FIELDS`); pass others to `check` to configure a region.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from services.ingest.domain.national import (
    LIST_INTERFACES,
    MAIN_PROCEDURE_TYPE,
    PRINCIPAL_FLAG,
    WESTERN_DIAG_TYPES,
    DiseInfo,
    ListKind,
    Problem,
    SettlementList,
    Severity,
)
from shared.errors import Invalid
from shared.money import ZERO, to_fen

Category = Literal["completeness", "accuracy"]


@dataclass(frozen=True)
class RuleInfo:
    """A rule's stable identity: what it checks, how bad, which quality score it hurts."""

    code: str
    severity: Severity
    category: Category
    title_zh: str
    title_en: str


def _r(code: str, severity: Severity, category: Category, zh: str, en: str) -> RuleInfo:
    return RuleInfo(code, severity, category, zh, en)


RULES: dict[str, RuleInfo] = {r.code: r for r in (
    _r("QC-REQ-001", "error", "completeness", "必填项缺失", "required field missing"),
    _r("QC-REQ-002", "error", "completeness", "缺少收费项目信息", "no fee lines (iteminfo)"),
    _r("QC-REQ-003", "error", "completeness", "收费项目缺少金额", "fee line without amount"),
    _r("QC-VAL-001", "error", "accuracy", "性别代码无效", "invalid sex code"),
    _r("QC-VAL-002", "error", "accuracy", "离院方式代码无效", "invalid discharge way"),
    _r("QC-DICT-001", "error", "accuracy", "诊断编码不在医保版字典中",
       "diagnosis code not in the dictionary"),
    _r("QC-DICT-002", "error", "accuracy", "手术操作编码不在医保版字典中",
       "procedure code not in the dictionary"),
    _r("QC-SEX-001", "error", "accuracy", "诊断与性别不符", "diagnosis conflicts with sex"),
    _r("QC-AGE-001", "warning", "accuracy", "诊断与年龄不符", "diagnosis conflicts with age"),
    _r("QC-NWB-001", "error", "accuracy", "不足1周岁须填写年龄（天）",
       "age in days required under one year"),
    _r("QC-NWB-002", "error", "accuracy", "新生儿（≤28天）须填写出生体重",
       "birth weight required for newborns (≤ 28 days)"),
    _r("QC-NWB-003", "warning", "accuracy", "新生儿体重超出合理范围（100–9999克）",
       "newborn weight outside 100–9999 g"),
    _r("QC-DATE-001", "error", "accuracy", "入院时间晚于出院时间", "admission after discharge"),
    _r("QC-DATE-002", "error", "accuracy", "实际住院天数与入出院日期不符",
       "length of stay does not match the dates"),
    _r("QC-DATE-003", "error", "accuracy", "出生日期晚于入院时间", "birth date after admission"),
    _r("QC-DATE-004", "error", "accuracy", "结算开始日期晚于结算结束日期",
       "settlement period starts after it ends"),
    _r("QC-DATE-005", "error", "accuracy", "日期晚于当前日期", "date in the future"),
    _r("QC-DATE-006", "error", "accuracy", "日期早于允许的最早年份", "date before the earliest year"),
    _r("QC-FEE-001", "error", "accuracy", "收费项目类别无效（应为01–14）",
       "invalid fee category (01–14)"),
    _r("QC-FEE-002", "error", "accuracy", "各收费类别金额之和与医疗费总额不符",
       "fee categories do not sum to the total"),
    _r("QC-FEE-003", "warning", "accuracy", "收费项目类别重复", "fee category repeated"),
    _r("QC-DX-001", "error", "accuracy", "主要诊断必须有且仅有一个",
       "exactly one principal diagnosis required"),
    _r("QC-DX-002", "warning", "accuracy", "诊断编码重复", "diagnosis code repeated"),
    _r("QC-DX-003", "error", "accuracy", "外因编码不能作为主要诊断",
       "external-cause code as principal diagnosis"),
    _r("QC-DX-004", "warning", "accuracy", "症状体征编码作为主要诊断",
       "symptom/sign code as principal diagnosis"),
    _r("QC-PX-001", "warning", "accuracy", "手术操作编码重复", "procedure code repeated"),
    _r("QC-PX-002", "warning", "accuracy", "主要手术操作应有且仅有一个",
       "exactly one main procedure expected"),
)}


def _p(code: str, path: str, detail_zh: str = "", detail_en: str = "",
       severity: Severity | None = None) -> Problem:
    rule = RULES[code]
    zh = f"{rule.title_zh}：{detail_zh}" if detail_zh else rule.title_zh
    en = f"{rule.title_en}: {detail_en}" if detail_en else rule.title_en
    return Problem(path, code, zh, en, severity or rule.severity)


# --------------------------------------------------------------------------- data tables

REQUIRED_COMMON: tuple[str, ...] = (
    "mdtrt_id", "setl_id", "psn_no", "medcasno", "fixmedins_code", "fixmedins_name",
    "psn_name", "gend", "brdy", "age", "hi_type", "insuplc", "ipt_med_type", "adm_time",
    "adm_caty", "dscg_time", "dscg_caty", "act_ipt_days", "dscg_way", "setl_begn_date",
    "setl_end_date", "hi_paymtd",
)
# 4101 carries the settlement's money; 4101A takes it from the settlement record instead.
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "4101": REQUIRED_COMMON + ("medfee_sumamt", "psn_selfpay", "psn_ownpay", "acct_pay",
                               "psn_cashpay"),
    "4101A": REQUIRED_COMMON,
}


def required_field_count(kind: ListKind = "4101",
                         required: Mapping[str, tuple[str, ...]] = REQUIRED_FIELDS) -> int:
    """How many required fields a list of this kind has (quality.py's completeness base)."""
    return len(required[kind]) + (2 if kind == "4101" else 0)  # + iteminfo, its amounts


@dataclass(frozen=True)
class CodeRange:
    """ICD-10 codes whose prefix (as long as `first`) lies in [first, last], e.g. N40–N51."""

    first: str
    last: str

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, str):
            return False
        prefix = code[: len(self.first)].upper()
        return self.first <= prefix <= self.last


@dataclass(frozen=True)
class SexRule:
    codes: CodeRange
    sex: int  # the only sex (gend) the codes are valid for: 1 male, 2 female
    label_zh: str


MALE, FEMALE = 1, 2
SEX_RULES: tuple[SexRule, ...] = (
    SexRule(CodeRange("O00", "O99"), FEMALE, "妊娠、分娩和产褥期"),
    SexRule(CodeRange("N70", "N98"), FEMALE, "女性盆腔器官炎性疾病及女性生殖道非炎性疾患"),
    SexRule(CodeRange("C51", "C58"), FEMALE, "女性生殖器官恶性肿瘤"),
    SexRule(CodeRange("D06", "D06"), FEMALE, "子宫颈原位癌"),
    SexRule(CodeRange("D07.0", "D07.3"), FEMALE, "女性生殖器官原位癌"),
    SexRule(CodeRange("D25", "D28"), FEMALE, "女性生殖器官良性肿瘤"),
    SexRule(CodeRange("D39", "D39"), FEMALE, "女性生殖器官动态未定肿瘤"),
    SexRule(CodeRange("Z32", "Z37"), FEMALE, "妊娠、产前检查及分娩结局"),
    SexRule(CodeRange("Z39", "Z39"), FEMALE, "产后检查和护理"),
    SexRule(CodeRange("N40", "N51"), MALE, "男性生殖器官疾病"),
    SexRule(CodeRange("C60", "C63"), MALE, "男性生殖器官恶性肿瘤"),
    SexRule(CodeRange("D07.4", "D07.6"), MALE, "男性生殖器官原位癌"),
    SexRule(CodeRange("D29", "D29"), MALE, "男性生殖器官良性肿瘤"),
    SexRule(CodeRange("D40", "D40"), MALE, "男性生殖器官动态未定肿瘤"),
)


@dataclass(frozen=True)
class AgeRule:
    """Codes valid only for ages in [min_age, max_age) years; `severity` when violated."""

    codes: CodeRange
    min_age: int
    max_age: int
    severity: Severity
    label_zh: str


AGE_RULES: tuple[AgeRule, ...] = (
    AgeRule(CodeRange("P00", "P96"), 0, 1, "warning", "起源于围生期的情况（新生儿编码）"),
)


@dataclass(frozen=True)
class PrincipalRule:
    """Codes not allowed (error) or discouraged (warning) as the principal diagnosis."""

    codes: CodeRange
    code: str  # the QC code reported
    label_zh: str


PRINCIPAL_RULES: tuple[PrincipalRule, ...] = (
    PrincipalRule(CodeRange("V01", "Y98"), "QC-DX-003", "疾病和死亡的外因"),
    PrincipalRule(CodeRange("R00", "R99"), "QC-DX-004", "症状、体征和异常所见"),
)

class _Ranged(Protocol):
    @property
    def codes(self) -> CodeRange: ...


_R = TypeVar("_R", bound=_Ranged)


class _RuleIndex(Generic[_R]):
    """Which rules of a table cover a code, worked out once per code: codes repeat across lists,
    and testing every range of the sex table for every diagnosis was most of QC's time."""

    def __init__(self, rules: tuple[_R, ...]) -> None:
        self.rules = rules
        self._seen: dict[str, tuple[_R, ...]] = {}
        # the first letters each range spans: a code's prefix lies in [first, last] only when its
        # first letter (as `CodeRange` compares it, upper-cased) lies in [first[0], last[0]]
        self._leads = [(r.codes.first[:1], r.codes.last[:1]) for r in rules]

    def covering(self, code: str) -> tuple[_R, ...]:
        found = self._seen.get(code)
        if found is None:
            lead = code[:1].upper()[:1]
            found = (tuple(r for r in self.rules if code in r.codes)
                     if any(first <= lead <= last for first, last in self._leads) else ())
            if len(self._seen) < 100_000:  # bounded: codes come from the senders
                self._seen[code] = found
        return found


_INDEXES: dict[int, _RuleIndex[Any]] = {id(t): _RuleIndex(t) for t in (SEX_RULES, AGE_RULES, PRINCIPAL_RULES)}


def _covering(rules: Sequence[_R], code: str) -> Sequence[_R]:
    """The rules of `rules` (in order) whose code range holds `code`."""
    index = _INDEXES.get(id(rules))
    if index is not None and index.rules is rules:  # a built-in table (its index keeps it alive)
        return index.covering(code)  # type: ignore[no-any-return]
    return [r for r in rules if code in r.codes]


_TABLES: tuple[Sequence[_Ranged], ...] = (SEX_RULES, AGE_RULES, PRINCIPAL_RULES)
_RULELESS: set[str] = set()  # codes that no rule of the built-in sex, age and principal tables covers


def _ruleless(codes: Sequence[str]) -> bool:
    """True when no rule of the built-in sex, age and principal tables covers any of `codes`
    (the usual diagnoses: one set lookup for all of a list's)."""
    if _RULELESS.issuperset(codes):
        return True
    for code in codes:
        if code not in _RULELESS:
            if any(_covering(table, code) for table in _TABLES):
                return False
            if len(_RULELESS) < 100_000:  # bounded, as the rule indexes
                _RULELESS.add(code)
    return True


FEE_CATEGORIES: Mapping[str, str] = {
    "01": "床位费", "02": "诊察费", "03": "检查费", "04": "化验费", "05": "治疗费",
    "06": "手术费", "07": "护理费", "08": "卫生材料费", "09": "西药费", "10": "中药饮片费",
    "11": "中成药费", "12": "一般诊疗费", "13": "挂号费", "14": "其他费",
}
FEE_TOLERANCE = Decimal("0.01")
SEX_CODES = frozenset({"0", "1", "2", "9"})
DISCHARGE_WAYS = frozenset({"1", "2", "3", "4", "5", "9"})
NEWBORN_DAYS = 28
NEWBORN_WEIGHT_RANGE = (100, 9999)  # grams [common]


# --------------------------------------------------------------------------- dictionaries


class DictionaryError(Invalid):
    """A dictionary file is missing or malformed (configuration, not a list problem)."""

    default_code = "INVALID_DICTIONARY"


@dataclass(frozen=True)
class Dictionaries:
    """The 医保版 code dictionaries: membership tests only, so frozensets."""

    diagnoses: frozenset[str]
    procedures: frozenset[str]


def _read_codes(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DictionaryError(f"{path.name}: {e}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DictionaryError(f"{path.name}: empty file (expected a header row)")
    codes: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.removesuffix("\r").split("\t")
        if len(cells) != 2:
            raise DictionaryError(f"{path.name}: line {lineno}: expected code<TAB>name")
        codes.add(cells[0])  # verbatim: the scheme README forbids trimming cells
    return frozenset(codes)


def load_dictionaries(scheme_path: Path) -> Dictionaries:
    """Load diagnoses.tsv and procedures.tsv of a scheme directory (`code\\tname`, 1 header)."""
    return Dictionaries(_read_codes(scheme_path / "diagnoses.tsv"),
                        _read_codes(scheme_path / "procedures.tsv"))


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class DateWindow:
    """Where the dates of a list may lie: not after `today` + `future_days`, and the dates of
    the stay and its settlement not before `earliest_year` (a birth date may be)."""

    today: date
    earliest_year: int = 2000
    future_days: int = 1


@dataclass(slots=True)
class QcContext:
    """What the rules read besides the list. Made for each list: a plain slotted dataclass, never
    changed once made (a frozen one sets each field through object.__setattr__)."""

    dictionaries: Dictionaries
    kind: ListKind
    required: Mapping[str, tuple[str, ...]]
    sex_rules: Sequence[SexRule]
    age_rules: Sequence[AgeRule]
    principal_rules: Sequence[PrincipalRule]
    window: DateWindow | None = None
    western: Sequence[tuple[int, DiseInfo]] | None = None  # the list's, when `check` found them


Rule = Callable[[SettlementList, QcContext], Iterator[Problem]]


def western_diagnoses(sl: SettlementList) -> list[tuple[int, DiseInfo]]:
    """The Western diagnoses of a list, with their indexes."""
    return [(i, d) for i, d in enumerate(sl.diseinfo) if d.diag_type in WESTERN_DIAG_TYPES]


def _western(sl: SettlementList, ctx: QcContext) -> Sequence[tuple[int, DiseInfo]]:
    """The list's Western diagnoses: found once by `check` for all its rules."""
    return ctx.western if ctx.western is not None else western_diagnoses(sl)


def _dx(i: int) -> str:
    return f"diseinfo[{i}].diag_code"


def required_fields(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-REQ-001: every field of the kind's required set is present (not blank)."""
    for name in ctx.required[ctx.kind]:
        if getattr(sl.setlinfo, name, None) is None and not (sl.setlinfo.model_extra or {}).get(name):
            yield _p("QC-REQ-001", f"setlinfo.{name}", name, name)


def fee_lines_present(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-REQ-002 / 003: a 4101 list has fee lines, each with its amount."""
    if ctx.kind != "4101":
        return
    if not sl.iteminfo:
        yield _p("QC-REQ-002", "iteminfo")
    for i, item in enumerate(sl.iteminfo):
        if item.get("amt") is None:
            yield _p("QC-REQ-003", f"iteminfo[{i}].amt")


def sex_code_valid(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-VAL-001: gend is a GB/T 2261.1 code."""
    g = sl.setlinfo.gend
    if g is not None and g not in SEX_CODES:
        yield _p("QC-VAL-001", "setlinfo.gend", g, g)


def discharge_way_valid(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-VAL-002: dscg_way is one of the national 离院方式 codes."""
    w = sl.setlinfo.dscg_way
    if w is not None and w not in DISCHARGE_WAYS:
        yield _p("QC-VAL-002", "setlinfo.dscg_way", w, w)


def diagnoses_in_dictionary(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DICT-001: each Western diagnosis code is in the ICD-10 医保版 dictionary."""
    for i, d in _western(sl, ctx):
        if d.diag_code not in ctx.dictionaries.diagnoses:
            yield _p("QC-DICT-001", _dx(i), d.diag_code, d.diag_code)


def procedures_in_dictionary(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DICT-002: each procedure code is in the ICD-9-CM-3 医保版 dictionary."""
    for i, o in enumerate(sl.oprninfo):
        if o.oprn_oprt_code not in ctx.dictionaries.procedures:
            yield _p("QC-DICT-002", f"oprninfo[{i}].oprn_oprt_code", o.oprn_oprt_code,
                     o.oprn_oprt_code)


def sex_specific_diagnoses(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-SEX-001: no diagnosis restricted to the other sex (e.g. obstetrics on a male)."""
    g = sl.setlinfo.gend
    if g not in ("1", "2"):  # unknown / unspecified sex: nothing to compare with
        return
    sex = int(g)
    for i, d in _western(sl, ctx):
        for rule in _covering(ctx.sex_rules, d.diag_code):
            if rule.sex != sex:
                who_zh, who_en = ("女性", "female") if rule.sex == FEMALE else ("男性", "male")
                yield _p("QC-SEX-001", _dx(i), f"{d.diag_code}（{rule.label_zh}）仅适用于{who_zh}",
                         f"{d.diag_code} is {who_en}-only")
                break


def age_specific_diagnoses(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-AGE-001: age-restricted codes (newborn P00–P96) used outside their ages."""
    age = sl.setlinfo.age
    if age is None:
        return
    for i, d in _western(sl, ctx):
        for rule in _covering(ctx.age_rules, d.diag_code):
            if not rule.min_age <= age < rule.max_age:
                yield _p("QC-AGE-001", _dx(i), f"{d.diag_code}（{rule.label_zh}）用于{age}岁患者",
                         f"{d.diag_code} at age {age}", severity=rule.severity)
                break


def newborn_age_days(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-NWB-001: a patient under one year (age 0) has nwb_age (age in days)."""
    s = sl.setlinfo
    if s.age == 0 and s.nwb_age is None:
        yield _p("QC-NWB-001", "setlinfo.nwb_age")


def newborn_birth_weight(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-NWB-002: a newborn (nwb_age ≤ 28 days) has a birth weight."""
    s = sl.setlinfo
    if s.nwb_age is not None and s.nwb_age <= NEWBORN_DAYS and s.nwb_bir_wt is None:
        yield _p("QC-NWB-002", "setlinfo.nwb_bir_wt")


def newborn_weight_plausible(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-NWB-003: newborn weights lie in 100–9999 g (a typo guard, e.g. kg sent as g)."""
    low, high = NEWBORN_WEIGHT_RANGE
    for name in ("nwb_bir_wt", "nwb_adm_wt"):
        w = getattr(sl.setlinfo, name)
        if w is not None and not low <= w <= high:
            yield _p("QC-NWB-003", f"setlinfo.{name}", f"{w}克", f"{w} g")


def admission_before_discharge(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DATE-001: adm_time ≤ dscg_time."""
    s = sl.setlinfo
    if s.adm_time is not None and s.dscg_time is not None and s.adm_time > s.dscg_time:
        yield _p("QC-DATE-001", "setlinfo.dscg_time")


def stay_length_consistent(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DATE-002: act_ipt_days = calendar days from admission to discharge (same day: 0 or 1)."""
    s = sl.setlinfo
    if s.adm_time is None or s.dscg_time is None or s.act_ipt_days is None:
        return
    days = (s.dscg_time.date() - s.adm_time.date()).days
    if days < 0:
        return  # QC-DATE-001 already names the real problem
    ok = s.act_ipt_days == days or (days == 0 and s.act_ipt_days in (0, 1))
    if not ok:
        yield _p("QC-DATE-002", "setlinfo.act_ipt_days", f"填报{s.act_ipt_days}天，应为{days}天",
                 f"reported {s.act_ipt_days}, dates give {days}")


def birth_before_admission(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DATE-003: brdy ≤ admission date."""
    s = sl.setlinfo
    if s.brdy is not None and s.adm_time is not None and s.brdy > s.adm_time.date():
        yield _p("QC-DATE-003", "setlinfo.brdy")


def settlement_period_ordered(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DATE-004: setl_begn_date ≤ setl_end_date."""
    s = sl.setlinfo
    if s.setl_begn_date and s.setl_end_date and s.setl_begn_date > s.setl_end_date:
        yield _p("QC-DATE-004", "setlinfo.setl_end_date")


_STAY_DATES = ("adm_time", "dscg_time", "setl_begn_date", "setl_end_date", "dcla_time")


def dates_plausible(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DATE-005 / 006: no date after today (+ tolerance); the stay's not before the floor year."""
    w = ctx.window
    if w is None:
        return
    latest = w.today + timedelta(days=w.future_days)
    s = sl.setlinfo
    for name in (*_STAY_DATES, "brdy"):
        value = getattr(s, name)
        if value is None:
            continue
        day = value.date() if isinstance(value, datetime) else value
        if day > latest:
            yield _p("QC-DATE-005", f"setlinfo.{name}", f"{day}", f"{day}")
        elif name != "brdy" and day.year < w.earliest_year:
            yield _p("QC-DATE-006", f"setlinfo.{name}", f"{day}早于{w.earliest_year}年",
                     f"{day} is before {w.earliest_year}")


def fee_categories_valid(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-FEE-001: each fee line's med_chrgitm is one of the 14 categories 01–14."""
    for i, item in enumerate(sl.iteminfo):
        category = item.get("med_chrgitm")
        if category not in FEE_CATEGORIES:
            shown = category or "空"
            yield _p("QC-FEE-001", f"iteminfo[{i}].med_chrgitm", shown, shown)


def fee_categories_sum(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-FEE-002: Σ iteminfo.amt = medfee_sumamt within 0.01 yuan (when both exist)."""
    total = sl.setlinfo.medfee_sumamt
    if total is None or not sl.iteminfo:
        return
    summed = to_fen(sum((a for i in sl.iteminfo if (a := i.get("amt")) is not None), ZERO))  # "0.00" if none
    if abs(summed - total) > FEE_TOLERANCE:
        yield _p("QC-FEE-002", "setlinfo.medfee_sumamt", f"分类合计{summed}，总额{total}",
                 f"categories sum to {summed}, total is {total}")


def fee_categories_unique(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-FEE-003: each fee category on one line only."""
    seen: set[str] = set()
    for i, item in enumerate(sl.iteminfo):
        category = item.get("med_chrgitm")
        if category in seen:
            yield _p("QC-FEE-003", f"iteminfo[{i}].med_chrgitm", category or "", category or "")
        if category is not None:
            seen.add(category)


def one_principal_diagnosis(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DX-001: exactly one Western diagnosis has maindiag_flag "1"."""
    flagged = [i for i, d in _western(sl, ctx) if d.maindiag_flag == PRINCIPAL_FLAG]
    if not flagged:
        yield _p("QC-DX-001", "diseinfo", "未标记主要诊断", "none flagged")
    for i in flagged[1:]:
        yield _p("QC-DX-001", f"diseinfo[{i}].maindiag_flag", "标记了多个主要诊断",
                 "several flagged")


def duplicate_diagnoses(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DX-002: a diagnosis code appears once."""
    seen: set[str] = set()
    for i, d in _western(sl, ctx):
        if d.diag_code in seen:
            yield _p("QC-DX-002", _dx(i), d.diag_code, d.diag_code)
        seen.add(d.diag_code)


def principal_allowed(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-DX-003 / 004: the principal is no external cause (error) or symptom code (warning)."""
    western = _western(sl, ctx)
    if not western:
        return
    # the principal as `principal_first` picks it (the first flagged, else the first), with its index
    index, principal = next(((i, d) for i, d in western if d.maindiag_flag == PRINCIPAL_FLAG), western[0])
    for rule in _covering(ctx.principal_rules, principal.diag_code)[:1]:
        yield _p(rule.code, _dx(index), f"{principal.diag_code}（{rule.label_zh}）",
                 principal.diag_code)


def duplicate_procedures(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-PX-001: a procedure code appears once (repeats may be real: warning only)."""
    seen: set[str] = set()
    for i, o in enumerate(sl.oprninfo):
        if o.oprn_oprt_code in seen:
            yield _p("QC-PX-001", f"oprninfo[{i}].oprn_oprt_code", o.oprn_oprt_code,
                     o.oprn_oprt_code)
        seen.add(o.oprn_oprt_code)


def one_main_procedure(sl: SettlementList, ctx: QcContext) -> Iterator[Problem]:
    """QC-PX-002: with procedures, exactly one has oprn_oprt_type "1"."""
    if not sl.oprninfo:
        return
    mains = [i for i, o in enumerate(sl.oprninfo) if o.oprn_oprt_type == MAIN_PROCEDURE_TYPE]
    if len(mains) != 1:
        yield _p("QC-PX-002", "oprninfo", f"主要手术{len(mains)}个", f"{len(mains)} main")


ALL_RULES: tuple[Rule, ...] = (
    required_fields, fee_lines_present, sex_code_valid, discharge_way_valid,
    diagnoses_in_dictionary, procedures_in_dictionary, sex_specific_diagnoses,
    age_specific_diagnoses, newborn_age_days, newborn_birth_weight, newborn_weight_plausible,
    admission_before_discharge, stay_length_consistent, birth_before_admission,
    settlement_period_ordered, dates_plausible, fee_categories_valid, fee_categories_sum, fee_categories_unique,
    one_principal_diagnosis, duplicate_diagnoses, principal_allowed, duplicate_procedures,
    one_main_procedure,
)


_BUILT_IN = frozenset(ALL_RULES)


def _clean(sl: SettlementList, ctx: QcContext, rules: Sequence[Rule]) -> bool:
    """True only when none of the built-in rules (the dictionary ones when in `rules`) would find
    anything: the usual list, told in one pass without a generator per rule. Each test below is
    its rule's condition; any doubt answers False and `check` runs the rules themselves."""
    s = sl.setlinfo
    if not _present(s, ctx.required[ctx.kind]):  # QC-REQ-001
        return False
    items = sl.iteminfo
    fees = ctx.kind == "4101"
    if fees and not items:  # QC-REQ-002
        return False
    amounts = _fee_amounts(items, fees)  # QC-REQ-003, QC-FEE-001, QC-FEE-003
    if amounts is None:
        return False
    total = s.medfee_sumamt
    if total is not None and items:  # QC-FEE-002
        summed = to_fen(sum(amounts, ZERO))
        if abs(summed - total) > FEE_TOLERANCE:
            return False
    g, w = s.gend, s.dscg_way
    if (g is not None and g not in SEX_CODES) or (w is not None and w not in DISCHARGE_WAYS):
        return False  # QC-VAL-001, QC-VAL-002
    western = _western(sl, ctx)
    codes = [d.diag_code for _i, d in western]
    if len(set(codes)) != len(codes):  # QC-DX-002
        return False
    if diagnoses_in_dictionary in rules and not ctx.dictionaries.diagnoses.issuperset(codes):
        return False  # QC-DICT-001
    age = s.age
    flagged = [d for _i, d in western if d.maindiag_flag == PRINCIPAL_FLAG]
    if len(flagged) != 1:  # QC-DX-001
        return False
    if not (ctx.sex_rules is SEX_RULES and ctx.age_rules is AGE_RULES
            and ctx.principal_rules is PRINCIPAL_RULES and _ruleless(codes)):
        sex = int(g) if g in ("1", "2") else None
        for code in codes:
            if sex is not None and any(r.sex != sex for r in _covering(ctx.sex_rules, code)):
                return False  # QC-SEX-001
            if age is not None and any(not r.min_age <= age < r.max_age for r in _covering(ctx.age_rules, code)):
                return False  # QC-AGE-001
        if _covering(ctx.principal_rules, flagged[0].diag_code):  # QC-DX-003, QC-DX-004
            return False
    ops = sl.oprninfo
    if ops:
        op_codes = [o.oprn_oprt_code for o in ops]
        if len(set(op_codes)) != len(op_codes):  # QC-PX-001
            return False
        if sum(1 for o in ops if o.oprn_oprt_type == MAIN_PROCEDURE_TYPE) != 1:  # QC-PX-002
            return False
        if procedures_in_dictionary in rules and not ctx.dictionaries.procedures.issuperset(op_codes):
            return False  # QC-DICT-002
    nwb_age = s.nwb_age
    if (age == 0 and nwb_age is None) or (nwb_age is not None and nwb_age <= NEWBORN_DAYS
                                          and s.nwb_bir_wt is None):
        return False  # QC-NWB-001, QC-NWB-002
    low, high = NEWBORN_WEIGHT_RANGE
    for weight in (s.nwb_bir_wt, s.nwb_adm_wt):
        if weight is not None and not low <= weight <= high:  # QC-NWB-003
            return False
    adm, dscg = s.adm_time, s.dscg_time
    if adm is not None and dscg is not None:
        if adm > dscg:  # QC-DATE-001
            return False
        days = (dscg.date() - adm.date()).days
        stay = s.act_ipt_days
        if stay is not None and not (stay == days or (days == 0 and stay in (0, 1))):
            return False  # QC-DATE-002
    if s.brdy is not None and adm is not None and s.brdy > adm.date():  # QC-DATE-003
        return False
    if s.setl_begn_date and s.setl_end_date and s.setl_begn_date > s.setl_end_date:  # QC-DATE-004
        return False
    window = ctx.window
    if window is not None:  # QC-DATE-005, QC-DATE-006
        latest = window.today + timedelta(days=window.future_days)
        for name in _STAY_DATES:
            value = getattr(s, name)
            if value is not None:
                day = value.date() if isinstance(value, datetime) else value
                if day > latest or day.year < window.earliest_year:
                    return False
        if s.brdy is not None and s.brdy > latest:
            return False
    return True


_NONE = type(None)
_GETTERS: dict[tuple[str, ...], Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {}


def _present(s: Any, names: tuple[str, ...]) -> bool:
    """True when every field of `names` is present (QC-REQ-001 finds nothing). Declared fields
    are read from the node's dict at once; an absent one, or a name the node does not declare
    (a region's own), is looked at as the rule does."""
    getter = _GETTERS.get(names)
    if getter is None and len(names) > 1:
        getter = _GETTERS[names] = itemgetter(*names)
    if getter is not None:
        try:
            if _NONE not in map(type, getter(s.__dict__)):  # (types: `None in` compares each Decimal)
                return True
        except KeyError:
            pass
    extra = s.model_extra or {}
    return all(getattr(s, name, None) is not None or extra.get(name) for name in names)


_CATEGORY, _AMOUNT = itemgetter("med_chrgitm"), itemgetter("amt")
_CATEGORIES = frozenset(FEE_CATEGORIES)


def _fee_amounts(items: Sequence[Mapping[str, Any]], fees: bool) -> list[Decimal] | None:
    """The fee lines' amounts in order (those given); None when QC-REQ-003 (`fees`: a 4101
    list), QC-FEE-001 or QC-FEE-003 finds a problem."""
    try:
        categories = list(map(_CATEGORY, items))
        amounts = list(map(_AMOUNT, items))
    except KeyError:  # a line without a category or an amount: line by line
        categories = [item.get("med_chrgitm") for item in items]
        amounts = [item.get("amt") for item in items]
    if not _CATEGORIES.issuperset(categories) or len(set(categories)) != len(categories):
        return None
    if _NONE in map(type, amounts):
        if fees:
            return None
        amounts = [a for a in amounts if a is not None]
    return amounts


def check(sl: SettlementList, dictionaries: Dictionaries, *, kind: ListKind = "4101",
          required: Mapping[str, tuple[str, ...]] = REQUIRED_FIELDS,
          sex_rules: Sequence[SexRule] = SEX_RULES, age_rules: Sequence[AgeRule] = AGE_RULES,
          principal_rules: Sequence[PrincipalRule] = PRINCIPAL_RULES,
          rules: Sequence[Rule] = ALL_RULES, window: DateWindow | None = None) -> list[Problem]:
    """Run every rule; return EVERY problem found (errors block, warnings are counted). The
    dates are checked against `window` when given."""
    if kind not in LIST_INTERFACES:
        raise ValueError(f"kind must be one of {LIST_INTERFACES}, not {kind!r}")
    ctx = QcContext(dictionaries, kind, required, sex_rules, age_rules, principal_rules, window,
                    western_diagnoses(sl))
    if _BUILT_IN.issuperset(rules) and _clean(sl, ctx, rules):
        return []  # what running the rules finds for the usual list, found in one pass
    return [problem for rule in rules for problem in rule(sl, ctx)]


def blocking(problems: Sequence[Problem]) -> list[Problem]:
    """The problems that reject a list."""
    return [p for p in problems if p.severity == "error"]
