"""The national settlement-list messages (医保结算清单, interfaces 4101 / 4101A / 4102), read tolerantly.

What for: ingest receives lists in the national platform's format (domain.md §3). This module
turns one such JSON document into typed models that keep the NATIONAL field names, and maps a
list onto the few facts the pipeline needs (`case_fields`). It is pure: pydantic and the
standard library only, no web, bus or database imports.

Reading rules (real messages are messy, see the shared testdata README):

* numbers may arrive as strings or numbers, codes as numbers or strings;
* an empty string (or whitespace, or null) in an optional field means "absent";
* an array node may be null / "" (empty) or a single object (a one-element array);
* unknown fields (provincial extensions) are accepted and kept (`model_extra`);
* strict where it matters: `setl_id`, `psn_no`, `fixmedins_code` present; at least one
  diagnosis, each with a code; dates parseable; money a `Decimal` with at most 2 places and
  not negative (never a float); an amount nothing reads as a number is checked the same way
  and kept as that `Decimal`'s text (`MoneyText`).

Every failure is ONE exception type, `ListRejected`, carrying all the problems found, each
with a field path. Paths are relative to the list (the `input` node): `setlinfo.gend`,
`diseinfo[2].diag_code`; envelope fields keep their own names (`msgid`, `infno`); the input
node itself is `input` and a message that is not an object is `message`. QC problems
(`services.ingest.domain.qc`) use the same paths, so both can be reported in one reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    with_config,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from shared.errors import Invalid, detail
from shared.money import ZERO

Severity = Literal["error", "warning"]
ListKind = Literal["4101", "4101A"]
LIST_INTERFACES: tuple[str, ...] = ("4101", "4101A")
STATUS_INTERFACE = "4102"

# 4102 stas_type values: 1 valid (有效), 0 withdrawn (撤销/无效). 4101A lists carry "1".
STATUS_VALID = "1"
STATUS_WITHDRAWN = "0"

# days_rinp_flag_31 (出院31天内再住院计划). The national code table is 1 = 无 (none), 2 = 有
# (planned); domain.md §11 treats "flag set" as planned. So only "2" means planned: every
# example message carries "1" (no plan). Kept as data so a province can override it.
PLANNED_READMISSION_CODES: frozenset[str] = frozenset({"2"})

# diseinfo.diag_type: 1 西医诊断 (ICD-10 医保版, what DRG/DIP group on); 2 / 3 are TCM
# (中医主病 / 中医主证) coded in the TCM classification and ignored by the grouping facts.
WESTERN_DIAG_TYPES: frozenset[str | None] = frozenset({"1", None})
PRINCIPAL_FLAG = "1"  # maindiag_flag of the principal diagnosis (主要诊断)
MAIN_PROCEDURE_TYPE = "1"  # oprn_oprt_type of the main procedure (主要手术及操作)

MONEY_PLACES = Decimal("0.01")
_MONEY_MAX_ADJUSTED = 11  # at most 12 integer digits (< 10^12 yuan): 14 digits with the fen


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a list: where (field path), what (stable code), how bad."""

    field: str
    code: str
    message_zh: str
    message_en: str
    severity: Severity = "error"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message_zh": self.message_zh,
                "message_en": self.message_en, "severity": self.severity}


class ListRejected(Invalid):
    """The only exception the parsers raise: the list (or message) cannot be accepted.

    As an API error (422 `LIST_REJECTED`; 403 `HOSPITAL_MISMATCH` when the list is `forbidden`
    to the caller) it names the first problem; `details` has every problem, with its zh and en
    messages and its severity.
    """

    default_code = "LIST_REJECTED"

    def __init__(self, problems: list[Problem], *, forbidden: bool = False) -> None:
        first = problems[0] if problems else Problem("input", "NAT-INVALID", *PARSE_CODES["NAT-INVALID"])
        super().__init__(
            f"{first.field}: {first.message_en}", field=first.field,
            code="HOSPITAL_MISMATCH" if forbidden else None, status=403 if forbidden else None,
            details=[detail(p.field, p.code, p.message_en, message_zh=p.message_zh,
                            message_en=p.message_en, severity=p.severity) for p in problems])
        self.problems = problems
        self.forbidden = forbidden

    def __str__(self) -> str:
        return "; ".join(f"{p.field}: {p.message_en}" for p in self.problems)


# Parse-level problem codes (stable; QC codes live in qc.py).
PARSE_CODES: dict[str, tuple[str, str]] = {
    "NAT-REQUIRED": ("必填项缺失", "required field is missing"),
    "NAT-NOT-OBJECT": ("应为JSON对象", "must be a JSON object"),
    "NAT-NOT-ARRAY": ("应为JSON数组", "must be a JSON array"),
    "NAT-TYPE": ("数据类型不正确", "wrong data type"),
    "NAT-INT": ("应为整数", "must be an integer"),
    "NAT-RANGE": ("数值超出允许范围", "value out of range"),
    "NAT-TOO-LONG": ("长度超出限制", "value too long"),
    "NAT-DATE": ("日期时间格式不正确（应为yyyy-MM-dd或yyyy-MM-dd HH:mm:ss）",
                 "unparseable date/time (expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss)"),
    "NAT-MONEY": ("金额格式不正确（应为不超过两位小数的非负数）",
                  "invalid amount (a non-negative number with at most 2 decimals)"),
    "NAT-NO-DIAGNOSIS": ("至少需要一条诊断信息", "at least one diagnosis is required"),
    "NAT-INFNO": ("交易编号不支持或与报文不一致", "unsupported interface number or mismatch"),
    "NAT-HOSPITAL-MISMATCH": ("清单中的定点医药机构编号与报文头不一致",
                              "fixmedins_code differs from the envelope's"),
    "NAT-STATUS": ("状态类型无效（0撤销，1有效）", "invalid stas_type (0 withdrawn, 1 valid)"),
    "NAT-INVALID": ("取值无效", "invalid value"),
}


def _err(code: str) -> PydanticCustomError:
    zh, en = PARSE_CODES[code]
    return PydanticCustomError(code, en, {"zh": zh})


# --------------------------------------------------------------------------- tolerant scalars


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _opt_str(v: object) -> str | None:
    if type(v) is str:  # the common case first, with the result of the checks below
        return v.strip() or None
    if _blank(v):
        return None
    if isinstance(v, str):
        return v.strip()  # surrounding blanks are transport noise, not part of a code
    if isinstance(v, bool):
        raise _err("NAT-TYPE")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else str(v)
    raise _err("NAT-TYPE")


def _ident(max_len: int) -> Callable[[object], str]:
    def check(v: object) -> str:
        s = _opt_str(v)
        if s is None:
            raise _err("NAT-REQUIRED")
        if len(s) > max_len:
            raise _err("NAT-TOO-LONG")
        return s
    return check


_INT_RE = re.compile(r"[+-]?\d{1,12}(\.0*)?")


def _opt_int(v: object) -> int | None:
    if _blank(v):
        return None
    if isinstance(v, bool):
        raise _err("NAT-INT")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise _err("NAT-INT")
    if isinstance(v, str) and _INT_RE.fullmatch(v.strip()):
        return int(v.strip().split(".")[0])
    raise _err("NAT-INT")


_MONEY_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_MONEY_FAST = re.compile(r"\d{1,12}\.\d\d")


def to_money(v: object) -> Decimal | None:
    """A yuan amount as Decimal with 2 places; None when blank. Raises a pydantic error.

    JSON numbers are read through `str()`, so 13927.62 stays exactly 13927.62 (Python prints
    a float's shortest round-trip form); no arithmetic is ever done on a float.
    """
    if type(v) is str and _MONEY_FAST.fullmatch(v):
        return Decimal(v)  # the common shape "1286.83": already exact to the fen
    if _blank(v):
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float | Decimal):
        raise _err("NAT-MONEY")
    text = v.strip() if isinstance(v, str) else str(v)
    if not _MONEY_RE.fullmatch(text):  # also refuses "1_000", "1e3", "NaN", "Infinity"
        raise _err("NAT-MONEY")
    try:
        d = Decimal(text)
        if d < 0 or d.adjusted() > _MONEY_MAX_ADJUSTED:
            raise _err("NAT-MONEY")
        q = d.quantize(MONEY_PLACES)
    except InvalidOperation:
        raise _err("NAT-MONEY") from None
    if q != d:  # more than 2 significant decimals ("12.500" is fine, "12.505" is not)
        raise _err("NAT-MONEY")
    return q


def _money_text(v: object) -> str | None:
    """`to_money` as text: "12.5" → "12.50"; None when blank."""
    amount = to_money(v)
    return None if amount is None else str(amount)


_DT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
               "%Y%m%d%H%M%S", "%Y%m%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d")


_ISO_FAST = re.compile(r"\d{4}-\d\d-\d\d( \d\d:\d\d:\d\d)?")


def _parse_dt(v: object) -> datetime | None:
    if type(v) is str and _ISO_FAST.fullmatch(v):
        try:
            return datetime.fromisoformat(v)  # the national format, parsed in C
        except ValueError:
            raise _err("NAT-DATE") from None
    if _blank(v):
        return None
    if isinstance(v, str):
        text = v.strip()
        if len(text) <= 19:
            for fmt in _DT_FORMATS:
                try:
                    return datetime.strptime(text, fmt)
                except ValueError:
                    continue
    raise _err("NAT-DATE")


def _opt_date(v: object) -> date | None:
    dt = _parse_dt(v)
    return dt.date() if dt else None


def _array(v: object) -> object:
    if type(v) is list:  # the common case first
        return v
    if _blank(v):
        return []
    if isinstance(v, dict):  # some senders write a one-element array as the bare object
        return [v]
    if not isinstance(v, list):
        raise _err("NAT-NOT-ARRAY")
    return v


def _in_range(low: int, high: int) -> Callable[[int | None], int | None]:
    def check(v: int | None) -> int | None:
        if v is not None and not low <= v <= high:
            raise _err("NAT-RANGE")
        return v
    return check


def _non_empty(v: list[Any]) -> list[Any]:
    if not v:
        raise _err("NAT-NO-DIAGNOSIS")
    return v


def _status(v: str) -> str:
    if v not in (STATUS_VALID, STATUS_WITHDRAWN):
        raise _err("NAT-STATUS")
    return v


class _CanonicalFirst:
    """A field validator: pydantic's core takes a value already in canonical form ("1286.83",
    "A05") by itself, and only any other value goes through the Python reader `read`.

    Why: calling a Python function for each of the ~160 fields of a list was most of the cost
    of reading it. Exact because `canonical` accepts only values for which `read` gives the
    same result, and `read` raises only the error `code`, reported as before.
    """

    def __init__(self, canonical: CoreSchema, read: Callable[[Any], Any], code: str) -> None:
        self.canonical, self.read, self.code = canonical, read, code
        self.result: CoreSchema | None = None  # the annotated type's schema, once pydantic built it

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        zh, en = PARSE_CODES[self.code]
        self.result = handler(source)
        tolerant = core_schema.no_info_before_validator_function(self.read, self.result)  # BeforeValidator
        return core_schema.union_schema(
            [self.canonical, tolerant], mode="left_to_right",
            custom_error_type=self.code, custom_error_message=en, custom_error_context={"zh": zh})

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        assert self.result is not None
        return handler(self.result)  # as with a BeforeValidator: the annotated type's


# Canonical forms (patterns in the syntax of pydantic's core, Rust `regex`): text with no blank
# around it, Python's blanks (what str.strip() removes, all below U+3001) spelled out; numbers in
# ASCII digits (Python's \d takes other digits too: those go the tolerant way).
_SPACE = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x3001)) if c.isspace())
CANONICAL_TEXT = core_schema.str_schema(strict=True, pattern=f"^[^{_SPACE}](?s:.*[^{_SPACE}])?$")
# integers, dates and times in their canonical shape are converted by the core too (a Python
# reader called for each date of a list); the same values as `int(...)`, `date`/`datetime.
# fromisoformat(...)`: a value the core refuses (31 February) goes the tolerant way and is
# refused there as before. Amounts: `Decimal` itself (pydantic's decimal validator costs more)
CANONICAL_INT = core_schema.chain_schema([
    core_schema.str_schema(strict=True, pattern=r"^[0-9]{1,12}$"), core_schema.int_schema()])
CANONICAL_MONEY = core_schema.chain_schema([
    core_schema.str_schema(strict=True, pattern=r"^[0-9]{1,12}\.[0-9][0-9]$"),
    core_schema.no_info_plain_validator_function(Decimal)])
# an amount kept as text: the text `str()` of its `Decimal` would give (no leading zero)
CANONICAL_MONEY_TEXT = core_schema.str_schema(strict=True, pattern=r"^(0|[1-9][0-9]{0,11})\.[0-9][0-9]$")
CANONICAL_DATETIME = core_schema.chain_schema([
    core_schema.str_schema(strict=True, pattern=r"^[0-9]{4}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]$"),
    core_schema.datetime_schema()])
CANONICAL_DATE = core_schema.chain_schema([
    core_schema.str_schema(strict=True, pattern=r"^[0-9]{4}-[0-9][0-9]-[0-9][0-9]$"), core_schema.date_schema()])

OptStr = Annotated[str | None, _CanonicalFirst(CANONICAL_TEXT, _opt_str, "NAT-TYPE")]
OptInt = Annotated[int | None, _CanonicalFirst(CANONICAL_INT, _opt_int, "NAT-INT")]
Money = Annotated[Decimal | None, _CanonicalFirst(CANONICAL_MONEY, to_money, "NAT-MONEY")]
# An amount nothing reads as a number (the parts of a fee line, the account and cash shares, a
# fund's payment): read and refused exactly as `Money`, kept as the text of that amount ("12.50"),
# so the ~60 of a list are not made into `Decimal`s that nothing uses (most of reading a list).
MoneyText = Annotated[str | None, _CanonicalFirst(CANONICAL_MONEY_TEXT, _money_text, "NAT-MONEY")]
OptDateTime = Annotated[datetime | None, _CanonicalFirst(CANONICAL_DATETIME, _parse_dt, "NAT-DATE")]
OptDate = Annotated[date | None, _CanonicalFirst(CANONICAL_DATE, _opt_date, "NAT-DATE")]
Id64 = Annotated[str, BeforeValidator(_ident(64))]
Code32 = Annotated[str, BeforeValidator(_ident(32))]
DiagCode = Annotated[str, BeforeValidator(_ident(64))]

_T = TypeVar("_T")
Array = Annotated[list[_T], BeforeValidator(_array)]


class _Node(BaseModel):
    """Tolerant node: unknown (provincial) fields are kept in `model_extra`."""

    model_config = ConfigDict(extra="allow", frozen=True)


# --------------------------------------------------------------------------- list nodes


class SetlInfo(_Node):
    """`setlinfo`: the list's basic and inpatient part (one per list)."""

    mdtrt_id: OptStr = None
    setl_id: Id64
    psn_no: Id64
    medcasno: OptStr = None
    fixmedins_code: Code32
    fixmedins_name: OptStr = None
    hi_setl_lv: OptStr = None
    hi_no: OptStr = None
    dcla_time: OptDateTime = None
    psn_name: OptStr = None
    gend: OptStr = None  # GB/T 2261.1: 1 male, 2 female, 0 unknown, 9 unspecified
    brdy: OptDate = None
    age: Annotated[OptInt, AfterValidator(_in_range(0, 150))] = None
    ntly: OptStr = None
    nwb_age: Annotated[OptInt, AfterValidator(_in_range(0, 366))] = None  # age in days, under 1 year
    naty: OptStr = None
    patn_cert_type: OptStr = None
    certno: OptStr = None
    prfs: OptStr = None
    hi_type: OptStr = None  # e.g. 310 职工基本医疗保险, 390 城乡居民基本医疗保险
    insuplc: OptStr = None  # insured place (参保地); differs from the area for 异地就医
    sp_psn_type: OptStr = None
    nwb_adm_type: OptStr = None
    nwb_bir_wt: Annotated[OptInt, AfterValidator(_in_range(0, 20_000))] = None  # grams
    nwb_adm_wt: Annotated[OptInt, AfterValidator(_in_range(0, 20_000))] = None  # grams
    ipt_med_type: OptStr = None
    adm_way: OptStr = None
    trt_type: OptStr = None
    adm_time: OptDateTime = None
    adm_caty: OptStr = None
    refldept_dept: OptStr = None
    dscg_time: OptDateTime = None
    dscg_caty: OptStr = None
    act_ipt_days: Annotated[OptInt, AfterValidator(_in_range(0, 36_500))] = None
    wm_dise_code: OptStr = None
    tcm_dise_code: OptStr = None
    diag_code_cnt: OptInt = None
    oprn_oprt_code_cnt: OptInt = None
    vent_used_dura: OptStr = None  # "d/h/m"
    pwcry_bfadm_coma_dura: OptStr = None
    pwcry_afadm_coma_dura: OptStr = None
    dscg_way: OptStr = None  # 1 医嘱离院 2 医嘱转院 3 转社区 4 非医嘱离院 5 死亡 9 其他
    acp_medins_code: OptStr = None
    acp_medins_name: OptStr = None
    days_rinp_flag_31: OptStr = None
    days_rinp_pup_31: OptStr = None
    chfpdr_name: OptStr = None
    chfpdr_code: OptStr = None
    setl_begn_date: OptDate = None
    setl_end_date: OptDate = None
    medfee_sumamt: Money = None
    psn_selfpay: Money = None
    psn_ownpay: Money = None
    acct_pay: MoneyText = None
    psn_cashpay: MoneyText = None
    hi_paymtd: OptStr = None
    hsorg: OptStr = None
    hsorg_opter: OptStr = None
    medins_fill_dept: OptStr = None
    medins_fill_psn: OptStr = None
    bill_code: OptStr = None
    bill_no: OptStr = None
    biz_sn: OptStr = None
    stas_type: OptStr = None


class DiseInfo(_Node):
    """`diseinfo[]`: one discharge diagnosis (出院诊断)."""

    diag_type: OptStr = None
    diag_code: DiagCode
    diag_name: OptStr = None
    maindiag_flag: OptStr = None
    adm_cond_type: OptStr = None  # 入院病情


class OprnInfo(_Node):
    """`oprninfo[]`: one procedure (手术及操作)."""

    oprn_oprt_type: OptStr = None  # 1 main, 2 other
    oprn_oprt_code: DiagCode
    oprn_oprt_name: OptStr = None
    oprn_oprt_date: OptDateTime = None
    anst_way: OptStr = None
    oper_dr_name: OptStr = None
    oper_dr_code: OptStr = None
    anst_dr_name: OptStr = None
    anst_dr_code: OptStr = None
    oprn_oprt_begntime: OptDateTime = None
    oprn_oprt_endtime: OptDateTime = None
    anst_begntime: OptDateTime = None
    anst_endtime: OptDateTime = None


@with_config(ConfigDict(extra="allow"))
class ItemInfo(TypedDict, total=False):
    """`iteminfo[]`: the amount of one of the 14 fee categories (收费项目类别, 4101 only).

    A dict, read by the same rules as the nodes (an absent field is absent: `item.get("amt")`),
    unknown fields kept as they came. Why not a model: a list has 14 of these, and making 14
    model instances cost more than reading their 84 fields.
    """

    med_chrgitm: OptStr
    amt: Money
    claa_sumfee: MoneyText  # 甲类
    clab_amt: MoneyText  # 乙类
    fulamt_ownpay_amt: MoneyText  # 全自费
    oth_amt: MoneyText


class PayInfo(_Node):
    """`payinfo[]`: one fund's payment (基金支付, 4101 only)."""

    fund_pay_type: OptStr = None
    fund_payamt: MoneyText = None


class IcuInfo(_Node):
    """`icuinfo[]`: one stay in intensive care (重症监护)."""

    scs_cutd_ward_type: OptStr = None
    scs_cutd_inpool_time: OptDateTime = None
    scs_cutd_exit_time: OptDateTime = None
    scs_cutd_sum_dura: OptStr = None


class BldInfo(_Node):
    """`bldinfo[]`: one blood transfusion (输血, 4101A)."""

    bld_cat: OptStr = None
    bld_amt: OptStr = None
    bld_unt: OptStr = None


class OpspDiseInfo(_Node):
    """`opspdiseinfo[]`: outpatient chronic/special disease (门诊慢特病) diagnosis."""

    diag_name: OptStr = None
    diag_code: OptStr = None
    oprn_oprt_name: OptStr = None
    oprn_oprt_code: OptStr = None


class SettlementList(_Node):
    """The `input` node of 4101 (4101A is the same without `iteminfo` / `payinfo`)."""

    setlinfo: SetlInfo
    payinfo: Array[PayInfo] = Field(default_factory=list)
    opspdiseinfo: Array[OpspDiseInfo] = Field(default_factory=list)
    diseinfo: Annotated[Array[DiseInfo], AfterValidator(_non_empty)]
    iteminfo: Array[ItemInfo] = Field(default_factory=list)
    oprninfo: Array[OprnInfo] = Field(default_factory=list)
    icuinfo: Array[IcuInfo] = Field(default_factory=list)
    bldinfo: Array[BldInfo] = Field(default_factory=list)


class StatusChange(_Node):
    """One 4102 `stastinfo[]` entry: set the status of the list (psn_no, setl_id)."""

    psn_no: Id64
    setl_id: Id64
    stas_type: Annotated[Id64, AfterValidator(_status)]


class StatusChangeData(_Node):
    stastinfo: Annotated[Array[StatusChange], Field(min_length=1)]


class StatusChangeInput(_Node):
    """The `input` node of 4102."""

    data: StatusChangeData


class HsaHeader(_Node):
    """The national envelope's header fields (domain.md §3)."""

    infno: OptStr = None
    msgid: OptStr = None  # fixmedins_code (12) + yyyyMMddHHmmss + 4-digit sequence
    mdtrtarea_admvs: OptStr = None
    insuplc_admdvs: OptStr = None
    recer_sys_code: OptStr = None
    dev_no: OptStr = None
    dev_safe_info: OptStr = None
    cainfo: OptStr = None
    signtype: OptStr = None
    infver: OptStr = None
    opter_type: OptStr = None
    opter: OptStr = None
    opter_name: OptStr = None
    inf_time: OptDateTime = None
    fixmedins_code: OptStr = None
    fixmedins_name: OptStr = None
    sign_no: OptStr = None


InputT = TypeVar("InputT", SettlementList, StatusChangeInput)


class HsaEnvelope(HsaHeader, Generic[InputT]):
    """A whole national message: header fields plus `input`."""

    input: InputT


ListMessage = HsaEnvelope[SettlementList]
StatusMessage = HsaEnvelope[StatusChangeInput]


# --------------------------------------------------------------------------- parsing


_BUILTIN: dict[str, str] = {
    "missing": "NAT-REQUIRED",
    "model_type": "NAT-NOT-OBJECT",
    "model_attributes_type": "NAT-NOT-OBJECT",
    "dict_type": "NAT-NOT-OBJECT",
    "list_type": "NAT-NOT-ARRAY",
    "too_short": "NAT-REQUIRED",
    "greater_than_equal": "NAT-RANGE",
    "less_than_equal": "NAT-RANGE",
}


def field_path(loc: Sequence[int | str], root: str) -> str:
    """("diseinfo", 2, "diag_code") → "diseinfo[2].diag_code"; () → root."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or root


def _problems(exc: ValidationError, root: str, drop: str | None = None) -> list[Problem]:
    found: list[Problem] = []
    for e in exc.errors(include_url=False):
        loc = list(e["loc"])
        if drop is not None and loc and loc[0] == drop and len(loc) > 1:
            loc = loc[1:]  # list fields are named relative to `input`, like QC's paths
        kind = e["type"]
        code = kind if kind in PARSE_CODES else _BUILTIN.get(kind, "NAT-INVALID")
        zh, en = PARSE_CODES[code]
        found.append(Problem(field_path(loc, root), code, zh, en))
    return found


def _copy_dict(v: object) -> object:
    return dict(v) if isinstance(v, dict) else v


def parse_settlement_list(doc: object) -> SettlementList:
    """Read one list (the `input` node of 4101/4101A). Raises only `ListRejected`."""
    if not isinstance(doc, dict):
        raise ListRejected([Problem("input", "NAT-NOT-OBJECT", *PARSE_CODES["NAT-NOT-OBJECT"])])
    try:
        return SettlementList.model_validate(doc)
    except ValidationError as e:
        raise ListRejected(_problems(e, "input")) from None
    except RecursionError:  # absurdly nested extension fields
        raise ListRejected([Problem("input", "NAT-INVALID", "嵌套层级过深",
                                    "nested too deeply")]) from None


def parse_message(infno: str, doc: object) -> ListMessage | StatusMessage:
    """Read one national message for interface `infno` (4101, 4101A or 4102).

    `infno` is the interface the message was posted to; the envelope's own `infno`, when
    present, must agree. A list whose `setlinfo.fixmedins_code` is blank takes the envelope's;
    when both are present they must agree. Raises only `ListRejected`.
    """
    if infno not in LIST_INTERFACES and infno != STATUS_INTERFACE:
        raise ListRejected([Problem("infno", "NAT-INFNO", *PARSE_CODES["NAT-INFNO"])])
    if not isinstance(doc, dict):
        raise ListRejected([Problem("message", "NAT-NOT-OBJECT", *PARSE_CODES["NAT-NOT-OBJECT"])])
    doc = dict(doc)
    early: list[Problem] = []
    own = _opt_str_or_none(doc.get("infno"))
    if own is not None and own != infno:
        early.append(Problem("infno", "NAT-INFNO", *PARSE_CODES["NAT-INFNO"]))
    header_hospital = _opt_str_or_none(doc.get("fixmedins_code"))
    model: type[ListMessage] | type[StatusMessage]
    if infno in LIST_INTERFACES:
        model = ListMessage
        inp = doc["input"] = _copy_dict(doc.get("input"))
        if isinstance(inp, dict):
            setl = inp["setlinfo"] = _copy_dict(inp.get("setlinfo"))
            if isinstance(setl, dict) and header_hospital is not None:
                listed = _opt_str_or_none(setl.get("fixmedins_code"))
                if listed is None:
                    setl["fixmedins_code"] = header_hospital
                elif listed != header_hospital:
                    early.append(Problem("setlinfo.fixmedins_code", "NAT-HOSPITAL-MISMATCH",
                                         *PARSE_CODES["NAT-HOSPITAL-MISMATCH"]))
    else:
        model = StatusMessage
    try:
        msg = model.model_validate(doc)
    except ValidationError as e:
        raise ListRejected(early + _problems(e, "message", drop="input")) from None
    except RecursionError:
        raise ListRejected([Problem("message", "NAT-INVALID", "嵌套层级过深",
                                    "nested too deeply")]) from None
    if early:
        raise ListRejected(early)
    return msg


def _opt_str_or_none(v: object) -> str | None:
    try:
        return _opt_str(v)
    except PydanticCustomError:
        return None


# --------------------------------------------------------------------------- native form


# The service's own simplified (native) list form → national names.
_NATIVE_SETLINFO: dict[str, str] = {
    "hospital_code": "fixmedins_code", "setl_id": "setl_id", "psn_no": "psn_no",
    "region": "insuplc", "sex": "gend", "age": "age", "birth_weight": "nwb_bir_wt",
    "dept": "dscg_caty", "los": "act_ipt_days", "leaving_type": "dscg_way",
    "admission_date": "adm_time", "discharge_date": "dscg_time",
    "total_cost": "medfee_sumamt", "insurance_type": "hi_type", "patient_share": "psn_selfpay",
    "own_pay": "psn_ownpay",
}
_NATIVE_PATHS: dict[str, str] = {f"setlinfo.{n}": k for k, n in _NATIVE_SETLINFO.items()}
_NATIVE_PATHS["setlinfo.nwb_age"] = "age_days"
_NATIVE_PATHS["setlinfo.days_rinp_flag_31"] = "planned_readmission"
_NATIVE_ARRAYS = (("diseinfo", "diagnoses"), ("oprninfo", "procedures"), ("iteminfo", "fees"))


def _native_path(path: str, fee_keys: Sequence[str]) -> str:
    """A national problem path in native names: "diseinfo[2].diag_code" → "diagnoses[2]"."""
    if path in _NATIVE_PATHS:
        return _NATIVE_PATHS[path]
    for national, native in _NATIVE_ARRAYS:
        if path.startswith(national):
            index = re.match(r"\[(\d+)\]", path[len(national):])
            if index is None:
                return native
            i = int(index.group(1))
            if native == "fees" and i < len(fee_keys):
                return f"fees.{fee_keys[i]}"
            return f"{native}[{i}]"
    return path


def parse_native(doc: object) -> SettlementList:
    """Read the service's native (simplified) list form as a national `SettlementList`.

    Native fields (the flat CSV layout's too, `csvformat`): hospital_code, setl_id,
    psn_no, region, sex, age, age_days, birth_weight, dept, los, leaving_type,
    admission_date, discharge_date, diagnoses (principal first), procedures (main first),
    total_cost, insurance_type, plus the optional `fees` ({med_chrgitm: amount}),
    `patient_share` (自付; 自付 + 自费 when `own_pay` is not given), `own_pay` (自费) and
    `planned_readmission` (bool). `age_days` becomes `nwb_age` only for patients under one year (the national list has no age in days for older patients).
    Unknown fields are kept in `setlinfo`'s extras. Problem paths use the native names.
    Raises only `ListRejected`.
    """
    if not isinstance(doc, dict):
        raise ListRejected([Problem("input", "NAT-NOT-OBJECT", *PARSE_CODES["NAT-NOT-OBJECT"])])
    known = set(_NATIVE_SETLINFO) | {"age_days", "planned_readmission", "diagnoses",
                                     "procedures", "fees"}
    setl: dict[Any, Any] = {k: v for k, v in doc.items() if k not in known}
    for native, nat_name in _NATIVE_SETLINFO.items():
        if native in doc and not (native == "region" and doc[native] == "default"):
            setl[nat_name] = doc[native]
    age, days = doc.get("age"), doc.get("age_days")
    if isinstance(days, int) and not isinstance(days, bool):
        if 0 <= days <= 365 and age in (0, None):
            setl["nwb_age"] = days
    elif days is not None:
        setl["nwb_age"] = days  # let the national reader name what is wrong with it
    planned = doc.get("planned_readmission")
    if planned is not None:
        setl["days_rinp_flag_31"] = ("2" if planned is True else "1" if planned is False
                                     else planned)
    fees = doc.get("fees")
    fee_keys = [str(k) for k in fees] if isinstance(fees, dict) else []
    as_national: dict[str, Any] = {
        "setlinfo": setl,
        "diseinfo": _native_codes(doc.get("diagnoses"), "diag_code", "maindiag_flag",
                                  extra={"diag_type": "1"}),
        "oprninfo": _native_codes(doc.get("procedures"), "oprn_oprt_code", "oprn_oprt_type",
                                  main="1", other="2"),
        "iteminfo": ([{"med_chrgitm": k, "amt": v} for k, v in fees.items()]
                     if isinstance(fees, dict) else fees),
    }
    try:
        return parse_settlement_list(as_national)
    except ListRejected as e:
        raise ListRejected([Problem(_native_path(p.field, fee_keys), p.code, p.message_zh, p.message_en,
                                    p.severity) for p in e.problems]) from None


def _native_codes(codes: object, code_field: str, flag_field: str, *, main: str = "1",
                  other: str = "0", extra: Mapping[str, str] | None = None) -> object:
    if not isinstance(codes, list):
        return codes
    return [{code_field: c, flag_field: main if i == 0 else other, **(extra or {})}
            for i, c in enumerate(codes)]


# --------------------------------------------------------------------------- pipeline facts


class CaseFields(NamedTuple):
    """What the pipeline needs from a list (the grouper's input and the case facts).

    Money is Decimal (2 places), never float. `fees` maps med_chrgitm → amount (do not hash).
    Made for each accepted list: an immutable tuple (a frozen dataclass set each of its fields
    through object.__setattr__, which cost more than mapping the list); `_replace` copies it.
    """

    hospital_code: str
    setl_id: str
    psn_no: str
    region: str
    sex: int
    age: int | None
    age_days: int | None
    birth_weight: int | None
    dept: str | None
    los: int | None
    leaving_type: int | None
    admission_date: date
    discharge_date: date
    diagnoses: tuple[str, ...]
    procedures: tuple[str, ...]
    total_cost: Decimal | None
    fees: dict[str, Decimal]
    patient_share: Decimal | None = None
    insurance_type: str | None = None
    planned_readmission: bool = False
    own_pay: Decimal | None = None  # 自费 (psn_ownpay)
    icu_hours: int = 0  # Σ icuinfo scs_cutd_sum_dura
    ventilation_hours: int = 0  # vent_used_dura


def duration_hours(value: str | None) -> int:
    """A national duration "days/hours/minutes" ("2/3/30") in whole hours; 0 when absent or not
    of that shape (QC judges the field; special-case review reads it)."""
    if value == "0/0/0" or not value:  # the usual value: none
        return 0
    parts = value.split("/")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 5 for p in parts):
        return 0
    days, hours, minutes = (int(p) for p in parts)
    return days * 24 + hours + minutes // 60


def principal_first(sl: SettlementList) -> list[DiseInfo]:
    """Western diagnoses, the principal (maindiag_flag "1") first, the others in order.

    Without a flagged one the first diagnosis is the principal (domain.md §3); with several
    the first flagged wins (QC reports the conflict).
    """
    western = [d for d in sl.diseinfo if d.diag_type in WESTERN_DIAG_TYPES]
    main = next((i for i, d in enumerate(western) if d.maindiag_flag == PRINCIPAL_FLAG), 0)
    return western[main:main + 1] + western[:main] + western[main + 1:]


def main_first(sl: SettlementList) -> list[OprnInfo]:
    """Procedures, the main one (oprn_oprt_type "1") first, the others in order."""
    ops = list(sl.oprninfo)
    main = next((i for i, o in enumerate(ops) if o.oprn_oprt_type == MAIN_PROCEDURE_TYPE), 0)
    return ops[main:main + 1] + ops[:main] + ops[main + 1:]


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return sum(present, ZERO) if present else None


_CATEGORY_AMOUNT = itemgetter("med_chrgitm", "amt")


def _fees(items: Sequence[ItemInfo]) -> dict[str, Decimal]:
    """med_chrgitm → the sum of its amounts. The first amount of a category as read: 0 + amt is
    amt itself (2 places, as every `Money` is), but for -0.00, which the sum makes 0.00."""
    try:  # the usual lines: each with its category and amount, each category once, none signed
        fees = dict(map(_CATEGORY_AMOUNT, items))
        if len(fees) == len(items) and None not in fees and not any(a is None or a.is_signed() for a in fees.values()):
            return fees
    except KeyError:
        pass
    fees = {}
    for item in items:
        category, amt = item.get("med_chrgitm"), item.get("amt")
        if category is not None and amt is not None:
            prev = fees.get(category)
            fees[category] = amt if prev is None and not amt.is_signed() else (ZERO if prev is None else prev) + amt
    return fees


def case_fields(sl: SettlementList, *, header: HsaHeader | None = None) -> CaseFields:
    """Map a list onto the pipeline's facts. `header` gives the envelope's insuplc_admdvs.

    Raises `ListRejected` when a fact the pipeline cannot do without (sex, admission and
    discharge dates, numeric codes) is missing or malformed: QC reports the same as errors.
    """
    s = sl.setlinfo
    problems: list[Problem] = []

    def code_int(value: str | None, path: str, required: bool) -> int | None:
        if value is None:
            if required:
                problems.append(Problem(path, "NAT-REQUIRED", *PARSE_CODES["NAT-REQUIRED"]))
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 2:
            problems.append(Problem(path, "NAT-INT", *PARSE_CODES["NAT-INT"]))
            return None
        return int(value)

    sex = code_int(s.gend, "setlinfo.gend", True)
    leaving = code_int(s.dscg_way, "setlinfo.dscg_way", False)
    for path, value in (("setlinfo.adm_time", s.adm_time), ("setlinfo.dscg_time", s.dscg_time)):
        if value is None:
            problems.append(Problem(path, "NAT-REQUIRED", *PARSE_CODES["NAT-REQUIRED"]))
    if problems or sex is None or s.adm_time is None or s.dscg_time is None:
        raise ListRejected(problems)

    fees = _fees(sl.iteminfo)
    total = s.medfee_sumamt
    if total is None and sl.iteminfo:
        total = _sum(i.get("amt") for i in sl.iteminfo)
    region = s.insuplc or (header.insuplc_admdvs if header else None) or "default"
    return CaseFields(
        hospital_code=s.fixmedins_code, setl_id=s.setl_id, psn_no=s.psn_no, region=region,
        sex=sex, age=s.age, age_days=s.nwb_age, birth_weight=s.nwb_bir_wt, dept=s.dscg_caty,
        los=s.act_ipt_days, leaving_type=leaving,
        admission_date=s.adm_time.date(), discharge_date=s.dscg_time.date(),
        diagnoses=tuple(d.diag_code for d in principal_first(sl)),
        procedures=tuple(o.oprn_oprt_code for o in main_first(sl)),
        total_cost=total, fees=fees, patient_share=_sum((s.psn_selfpay, s.psn_ownpay)),
        insurance_type=s.hi_type,
        planned_readmission=s.days_rinp_flag_31 in PLANNED_READMISSION_CODES,
        own_pay=s.psn_ownpay,
        icu_hours=sum(duration_hours(i.scs_cutd_sum_dura) for i in sl.icuinfo) if sl.icuinfo else 0,
        ventilation_hours=duration_hours(s.vent_used_dura),
    )


# --------------------------------------------------------------------------- replies


def failure_reply(problems: Sequence[Problem]) -> dict[str, Any]:
    """The national failure reply: infcode -1, a Chinese err_msg naming every field."""
    parts = [f"{p.field}：{p.message_zh}（{p.code}）" for p in problems]
    return {
        "infcode": -1,
        "err_msg": f"结算清单校验未通过，共{len(problems)}项：" + "；".join(parts),
        "output": {"problems": [p.as_dict() for p in problems]},
    }


def success_reply(setl_list_id: str, warnings: Sequence[Problem] = ()) -> dict[str, Any]:
    """The national success reply; stored warnings ride along as an extension when present."""
    output: dict[str, Any] = {"setl_list_id": setl_list_id}
    if warnings:
        output["warnings"] = [p.as_dict() for p in warnings]
    return {"infcode": 0, "err_msg": "", "output": output}
