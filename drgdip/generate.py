"""Synthetic region generator: native 4101 settlement lists for a whole DRG region.

What for: demos, load tests and the calibration/review stages need years of realistic
inpatient discharges from many hospitals, and real lists cannot leave a bureau. This module
makes them from a grouping scheme's own code lists, so every case is codable and groupable,
and it seeds the patterns the review stage must find (domain.md §11).

Output: each item is the `input` node of a 4101 message (domain.md §3): `setlinfo`,
`payinfo[]`, `opspdiseinfo[]`, `diseinfo[]`, `iteminfo[]`, `oprninfo[]`, `icuinfo[]`, with
the field names and string values of the national example message. Seeded cases carry an
extension field `setlinfo["_synthetic"] = {"pattern": ..., "related_setl_id": ...}`; a real
list never has it, so stages may use it only in tests and reports.

Pure: standard library plus the pure grouping engine; no web, database or files other than
the scheme folder. Deterministic for a seed, streaming (memory does not grow with `cases`).

Code values used (national dictionaries):
* `gend` 1 male / 2 female; `hi_type` 310 职工 / 390 居民; `days_rinp_flag_31` 1 no plan /
  2 planned readmission within 31 days; `dscg_way` 1 医嘱离院, 2 医嘱转院, 3 转社区, 4 非医嘱离院,
  5 死亡, 9 其他; `hi_paymtd` 4 = DRG; `hi_setl_lv` = the hospital level (3 三级, 2 二级, 1 一级).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import json
import math
import operator
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from services.grouper.domain import Scheme, load_scheme

# --------------------------------------------------------------------------- parameters
# Shares of seeded patterns and outliers, per fresh case. They are documented here so the
# review stage's tests can state what they expect to find.
READMISSION_SHARE = 0.012  # index stays that get an unplanned readmission within 15 days
SUSPICIOUS_CC_SHARE = 0.010  # one CC/MCC lifts the group while the cost stays low
SHORT_LOW_COST_SHARE = 0.012  # LOS 1-2 days, cost < 0.4 x group mean
BAD_RECORD_SHARE = 0.005  # deliberately broken lists (see BAD_RECORD_KINDS)
HIGH_OUTLIER_SHARE = 0.025
LOW_OUTLIER_SHARE = 0.03
PLANNED_READMISSION_SHARE = 0.01  # days_rinp_flag_31 = "2": negatives for the split-admission rule
MCC_SHARE = 0.20  # target share of cases with a counted MCC (before hospital-level modifiers)
CC_SHARE = 0.25  # target share with a counted CC (and no MCC)
READMISSION_WINDOW_DAYS = 15  # readmitted 1..14 days after discharge

# Hospital-level patterns (§11): in a few (hospital, quarter) episodes the hospital's figures
# move as the hospital-level rule describes; the truth is the episode, not a case.
HOSPITAL_PATTERN_RULES = {"hospital_upcoding": "HOSPITAL_UPCODING", "refusing_severe": "REFUSING_SEVERE",
                          "under_service": "UNDER_SERVICE"}
EPISODE_QUARTERS = 6  # episodes fall in the last quarters, so earlier ones are their history
EPISODE_MIN_CASES = 45  # expected discharges per quarter an episode hospital should have
EPISODE_EXTRA_CC = 0.6  # upcoding: share of its cases without a complication that get one
EPISODE_HEAVY_COST = 1.4  # refusing: a group whose base cost is ≥ this × the region's mean is "severe"
EPISODE_REFUSED = 0.8  # refusing: share of its severe cases sent elsewhere (re-drawn lighter)
EPISODE_LEFT = 0.15  # refusing: share of its cases leaving by transfer out (2) or against advice (4)
EPISODE_LOW = 0.2  # under-service: share of its cases discharged as low outliers
EPISODE_READMITTED = 0.12  # under-service: share of its cases readmitted 16-29 days later, unplanned
PAIR_PATTERNS = ("readmission_15d", "planned_chemo", "readmission_31d")

PATTERNS = ("readmission_15d", "suspicious_cc", "short_low_cost", "bad_record", "cost_shifting",
            "planned_chemo")
# The review rule each pattern is the ground truth of (services/review/domain/rules.py). A
# readmission pair is a truth row on its later stay only (the rule flags the readmission); a
# planned chemotherapy pair is a true negative of the split-admission rule (seeded = false).
PATTERN_RULES = {"readmission_15d": "SPLIT_ADMISSION", "suspicious_cc": "UPCODING_SECONDARY",
                 "short_low_cost": "LOW_STANDARD_ADMISSION", "cost_shifting": "COST_SHIFTING",
                 "planned_chemo": "SPLIT_ADMISSION"}
# Principal-diagnosis and procedure prefixes of chemotherapy, radiotherapy and dialysis stays
# (the split-admission rule's default exclusions): planned chemotherapy pairs are drawn from
# them, seeded split admissions never are.
TREATMENT_DX = ("Z51.0", "Z51.1", "Z51.2", "Z49")
TREATMENT_PX = ("99.25", "99.28", "92.2", "92.3", "39.95", "54.98")
CHEMO_DX = ("Z51.1", "Z51.2")
BAD_RECORD_KINDS = (
    "dscg_before_adm",  # discharge time earlier than admission time
    "los_mismatch",  # act_ipt_days differs from the dates
    "fee_sum_mismatch",  # medfee_sumamt differs from the sum of iteminfo amounts
    "unknown_diag_code",  # principal diagnosis not in the dictionary
    "missing_gend",  # a required field left empty
    "sex_conflict",  # sex-specific principal diagnosis on the other sex
    "newborn_weight_missing",  # newborn without birth weight
)

LEVEL_NAMES = {3: "三级", 2: "二级", 1: "一级"}
FEE_CATEGORIES = tuple(f"{i:02d}" for i in range(1, 15))
# Base fee shares for 01..14 (床位, 诊察, 检查, 化验, 治疗, 手术, 护理, 卫生材料, 西药, 中药饮片,
# 中成药, 一般诊疗, 挂号, 其他), surgical vs medical stays. Illustrative, not a national figure.
_FEES_SURGICAL = (4.0, 1.0, 7.0, 9.0, 8.0, 17.0, 3.0, 25.0, 20.0, 0.5, 2.0, 0.5, 0.05, 1.0)
_FEES_MEDICAL = (7.0, 2.0, 12.0, 16.0, 13.0, 0.0, 5.0, 6.0, 32.0, 2.0, 4.0, 0.5, 0.05, 1.0)
# Relative self-pay (全自费) propensity per category: materials and drugs carry most of it.
_OWNPAY_BIAS = (0.2, 0.0, 0.5, 0.5, 0.8, 0.6, 0.1, 2.0, 1.5, 1.0, 1.2, 0.0, 0.0, 1.0)

# Relative discharge volume per MDC (rough national shape); unknown MDCs get 2.0.
_MDC_VOLUME = {
    "MDCA": 0.6, "MDCP": 2.5, "MDCY": 0.3, "MDCZ": 0.5, "MDCM": 1.2, "MDCN": 3.5, "MDCB": 8.0,
    "MDCC": 3.0, "MDCD": 4.0, "MDCE": 10.0, "MDCF": 12.0, "MDCG": 9.0, "MDCH": 5.0,
    "MDCI": 9.0, "MDCJ": 3.0, "MDCK": 3.5, "MDCL": 5.0, "MDCO": 8.0, "MDCQ": 1.2,
    "MDCR": 4.0, "MDCS": 1.5, "MDCT": 0.8, "MDCU": 0.4, "MDCV": 2.0, "MDCW": 0.4, "MDCX": 2.5,
}
_MIN_MDC_SHARE = 0.005  # so that every MDC appears in a few thousand cases
# Age profile per MDC: (mean, sd, min, max) in years; newborn MDCs are handled apart.
_MDC_AGE = {
    "MDCO": (29, 5, 16, 48), "MDCN": (46, 13, 14, 85), "MDCM": (62, 15, 14, 95),
    "MDCB": (62, 15, 1, 98), "MDCE": (60, 22, 1, 98), "MDCF": (65, 13, 5, 98),
    "MDCT": (40, 15, 12, 85), "MDCU": (45, 12, 15, 80), "MDCV": (42, 20, 1, 95),
    "MDCW": (35, 20, 1, 90), "MDCY": (42, 12, 16, 80), "MDCZ": (45, 18, 3, 95),
    "MDCC": (60, 16, 1, 95), "MDCD": (45, 22, 1, 95), "MDCS": (45, 25, 1, 95),
}
_DEFAULT_AGE = (55, 18, 1, 95)
_MALE_SHARE = {"MDCF": 0.58, "MDCZ": 0.65, "MDCV": 0.6, "MDCU": 0.85, "MDCW": 0.6, "MDCK": 0.45}
_MDC_LOS = {"MDCO": 0.55, "MDCC": 0.55, "MDCT": 2.5, "MDCU": 1.6, "MDCA": 2.5, "MDCP": 1.2}
# Department (科别) per MDC: (medical, surgical).
_MDC_DEPT = {
    "MDCP": ("A07", "A07"), "MDCC": ("A10", "A10"), "MDCD": ("A11", "A11"),
    "MDCI": ("A04", "A04"), "MDCJ": ("A13", "A04"), "MDCM": ("A04", "A04"),
    "MDCN": ("A05", "A05"), "MDCO": ("A05", "A05"), "MDCR": ("A19", "A19"),
    "MDCS": ("A16", "A16"), "MDCY": ("A16", "A16"), "MDCT": ("A15", "A15"),
    "MDCU": ("A15", "A15"), "MDCV": ("A20", "A04"), "MDCW": ("A04", "A04"),
    "MDCX": ("A21", "A04"), "MDCZ": ("A04", "A04"),
}
# DRG cost/LOS multipliers by the DRG code's last digit (1 MCC, 3 CC, 5 none, 9 not split).
_DRG_COST = {"1": 1.55, "3": 1.2, "5": 0.9}
_DRG_LOS = {"1": 1.35, "3": 1.15, "5": 0.95}

# Common comorbidities and complications, used first when the scheme has them; the rest are
# drawn from the scheme's full CC/MCC tables. Checked against the scheme at load time.
_COMMON_NEUTRAL_DX = ("I10.x00", "E11.900", "E78.500", "K76.000", "E04.902", "I25.103",
                      "K29.500", "D64.900", "N39.000", "E86.x00")
_COMMON_CC = ("E87.600", "E87.100", "J18.900", "K92.200", "E87.200", "J98.101")
_COMMON_MCC = ("I50.900", "J96.000", "J96.900", "N17.900", "A41.900", "R57.000", "J80.x00",
               "I26.900", "D65.x00", "K72.000", "J44.100", "R65.200", "N18.500")
_COMMON_EXTRA_PX = ("89.5200", "88.7201", "87.4400", "87.4401", "88.0101", "87.0300",
                    "99.0400", "93.9600", "45.1300", "45.2300", "38.9300")

# Region: a prefecture with its districts/counties (admdvs codes) and off-site insured places.
PREFECTURE = "350500"
_COUNTIES = (("350502", "东湖区"), ("350503", "西山区"), ("350504", "南江区"),
             ("350505", "北岭区"), ("350521", "清溪县"), ("350524", "云台县"),
             ("350525", "安平县"), ("350526", "德化县"))
_OFF_SITE = ("350100", "350200", "350600", "440300", "330100", "360100")
_NAMES_L3 = ("第一人民医院", "中心医院", "第二人民医院", "中医院", "医科大学附属医院", "妇幼保健院")
_NAMES_L2 = ("人民医院", "第二医院", "中医院", "骨伤科医院", "第三医院")
_NAMES_L1 = ("镇卫生院", "社区卫生服务中心", "乡卫生院")
_TOWNS = ("城关", "龙门", "石井", "安溪", "金峰", "罗溪", "湖头", "官桥", "蓬华", "仙都")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_QUARTERS = tuple(f" {h:02d}:{m:02d}:00" for h in range(24) for m in (0, 15, 30, 45))
_TIMES_ADM = _QUARTERS[28:88]  # admissions 07:00-21:45
_TIMES_DSCG = _QUARTERS[32:64]  # discharges 08:00-15:45
_TIMES_DCLA = _QUARTERS[36:72]
_HOURS = tuple(f"{h:02d}:00:00" for h in range(24))
_CENTS = tuple(f".{c:02d}" for c in range(100))
_LEVEL_STR = {3: "3", 2: "2", 1: "1"}
_SEX_STR = {1: "1", 2: "2"}
_LEVEL_CC = {3: 1.15, 2: 1.0, 1: 0.7}  # tertiary hospitals treat (and code) sicker patients
_NEUTRAL_COUNTS = (0, 0, 1, 1, 2, 3)
# Illustrative local policy per insurance (employee?) and level: (deductible in fen,
# co-insurance rate on the rest of the policy-range cost).
_POLICY = {
    True: {3: (80000, 0.12), 2: (60000, 0.10), 1: (30000, 0.05)},
    False: {3: (100000, 0.40), 2: (70000, 0.30), 1: (30000, 0.15)},
}


@dataclass(frozen=True)
class PatternRates:
    """Share of fresh cases seeded with each pattern (a readmission or chemotherapy pair counts
    once, on its first stay). The defaults are the generator's historical shares, with neither
    cost shifting nor planned chemotherapy pairs, so default output stays as it always was.

    `strict` (set by `abuse`): the seeds are made unambiguous for the rules at their default
    parameters, whatever the region's calibrated means turn out to be: short low-cost stays and
    upcoded cases cost at most 0.25 and 0.45 of the group's tertiary-level mean (a calibrated
    mean mixes levels priced from 0.5 to 1.0 of it), and split admissions avoid chemotherapy,
    radiotherapy and dialysis groups.
    """

    split_admission: float = READMISSION_SHARE
    upcoding: float = SUSPICIOUS_CC_SHARE
    low_standard: float = SHORT_LOW_COST_SHARE
    bad_record: float = BAD_RECORD_SHARE
    cost_shifting: float = 0.0
    planned_chemo: float = 0.0
    strict: bool = False
    hospital_episodes: int = 0  # (hospital, quarter) episodes of each hospital-level pattern

    @classmethod
    def abuse(cls, rate: float, *, chemo: float | None = None) -> PatternRates:
        """Every case-level pattern at `rate`, planned chemotherapy pairs at `chemo` (default
        `rate`), bad records at their usual share; strict seeds; two episodes of each
        hospital-level pattern (none at rate 0)."""
        chemo = rate if chemo is None else chemo
        if not (0 <= rate <= 0.15 and 0 <= chemo <= 0.15):
            raise ValueError("a pattern rate must be between 0 and 0.15")
        return cls(rate, rate, rate, BAD_RECORD_SHARE, rate, chemo, True, 2 if rate > 0 else 0)

    def thresholds(self) -> tuple[tuple[float, str], ...]:
        """Cumulative (upper bound, pattern) in the order fresh cases draw them."""
        out, acc = [], 0.0
        for share, name in ((self.split_admission, "readmission_15d"), (self.upcoding, "suspicious_cc"),
                            (self.low_standard, "short_low_cost"), (self.bad_record, "bad_record"),
                            (self.cost_shifting, "cost_shifting"), (self.planned_chemo, "planned_chemo")):
            acc += share
            out.append((acc, name))
        return tuple(out)


def _treatment(t: CaseTemplate) -> bool:
    return t.pdx.startswith(TREATMENT_DX) or any(p.startswith(TREATMENT_PX) for p in t.procedures)


class GroundTruth:
    """The truth rows of a stream of generated lists, one call per list in stream order:
    {"setl_id", "fixmedins_code", "case_id", "rule", "pattern", "seeded", "related_setl_id"}.
    Pairs are told apart by order: the second stay seen of a pair is the readmission."""

    def __init__(self) -> None:
        self._first_of_pair: set[str] = set()

    def rows(self, lst: Mapping[str, Any]) -> list[dict[str, Any]]:
        s = lst["setlinfo"]
        syn = s.get("_synthetic")
        if not syn or syn["pattern"] not in PATTERN_RULES:
            return []
        pattern, related = syn["pattern"], syn.get("related_setl_id")
        if pattern in ("readmission_15d", "planned_chemo"):
            if related not in self._first_of_pair:
                self._first_of_pair.add(s["setl_id"])
                return []
            self._first_of_pair.discard(related)
        return [{"setl_id": s["setl_id"], "fixmedins_code": s["fixmedins_code"],
                 "case_id": f"{s['fixmedins_code']}-{s['setl_id']}", "rule": PATTERN_RULES[pattern],
                 "pattern": pattern, "seeded": pattern != "planned_chemo", "related_setl_id": related}]


def episode_truth(episodes: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """The truth rows of the hospital-level episodes (`RegionGenerator.episodes`): one per
    seeded (hospital, quarter), its `case_id` "<hospital>|<quarter>"."""
    return [{"case_id": f"{e['hospital_code']}|{e['period']}", "fixmedins_code": e["hospital_code"],
             "rule": e["rule"], "pattern": e["pattern"], "seeded": True, "period": e["period"]}
            for e in episodes]


# --------------------------------------------------------------------------- hospitals


@dataclass(frozen=True)
class Hospital:
    """A designated hospital (定点医疗机构) of the synthetic region."""

    code: str  # fixmedins_code, e.g. H35050001
    name: str
    level: int  # 3 三级, 2 二级, 1 一级
    region: str  # admdvs code of its district/county
    cost_factor: float  # relative price level (三级 ~1.0)
    los_factor: float
    volume: float  # relative discharge volume
    specialty: str  # "general" | "maternity" | "tcm" | "primary"

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "level": self.level,
                "level_name": self.level_name, "region": self.region,
                "cost_factor": round(self.cost_factor, 4), "los_factor": round(self.los_factor, 4),
                "volume": round(self.volume, 4), "specialty": self.specialty}


def build_hospitals(count: int, seed: int) -> list[Hospital]:
    """The region's hospitals: about 12 % 三级, 33 % 二级, the rest 一级 (at least one 三级).

    Tertiary hospitals discharge far more patients (volume 20 : 6 : 1) and cost more.
    """
    if count < 1:
        raise ValueError("hospitals must be at least 1")
    rng = random.Random(f"hospitals:{seed}")
    n3 = max(1, round(count * 0.12))
    n2 = max(0 if count < 2 else 1, round(count * 0.33))
    n2 = min(n2, count - n3)
    width = max(2, len(str(count)))
    out: list[Hospital] = []
    used: set[str] = set()
    for i in range(count):
        level = 3 if i < n3 else 2 if i < n3 + n2 else 1
        county_code, county = _COUNTIES[rng.randrange(len(_COUNTIES))] if i else _COUNTIES[0]
        if level == 3:
            k = i if i < len(_NAMES_L3) else rng.randrange(len(_NAMES_L3))
            base = f"示例市{_NAMES_L3[k]}" if i < 3 else f"{county}{_NAMES_L3[k]}"
            specialty = "maternity" if "妇幼" in base else "tcm" if "中医" in base else "general"
            cost, volume = 1.0, 20.0
        elif level == 2:
            base = f"{county}{_NAMES_L2[rng.randrange(len(_NAMES_L2))]}"
            specialty = "tcm" if "中医" in base else "general"
            cost, volume = 0.72, 6.0
        else:
            base = f"{county}{_TOWNS[rng.randrange(len(_TOWNS))]}{_NAMES_L1[rng.randrange(len(_NAMES_L1))]}"
            specialty, cost, volume = "primary", 0.5, 1.0
        name, k = base, 2
        while name in used:  # names must be unique; a real region would number them too
            name, k = f"{base}{k}院区", k + 1
        used.add(name)
        out.append(Hospital(
            code=f"H{PREFECTURE}{i + 1:0{width}d}", name=name, level=level, region=county_code,
            cost_factor=cost * math.exp(rng.gauss(0, 0.08)),
            los_factor={3: 1.0, 2: 1.05, 1: 0.95}[level] * math.exp(rng.gauss(0, 0.06)),
            volume=volume * math.exp(rng.gauss(0, 0.35)), specialty=specialty))
    return out


# --------------------------------------------------------------------------- case mix


@dataclass(frozen=True)
class CaseTemplate:
    """Codes that the scheme groups into one ADRG (checked with the engine at load time)."""

    pdx: str
    extra_dx: tuple[str, ...]  # diagnoses the ADRG/MDC rule needs (trauma regions, any_dx_in)
    procedures: tuple[str, ...]  # main procedure first
    sex: int  # 0 = either, else forced
    newborn: tuple[int, int, int, int] | None  # (min days, max days, min weight, max weight)


@dataclass
class AdrgProfile:
    """Everything the generator needs about one ADRG."""

    code: str
    mdc: str
    name: str
    templates: list[CaseTemplate]
    surgical: bool
    base_cost: float  # yuan, at a tertiary hospital, before the DRG split multiplier
    base_los: float
    volume: float
    splits: bool  # has MCC/CC sub-groups
    dept_medical: str = "A03"
    dept_surgical: str = "A04"
    ventilation: bool = False
    fee_shares: tuple[float, ...] = _FEES_MEDICAL
    fee_largest: int = 8  # index of the largest fee share (gets the rounding remainder)


@dataclass
class _Needs:
    pdx: list[str] = field(default_factory=list)
    main_px: list[str] = field(default_factory=list)
    any_px: list[str] = field(default_factory=list)
    any_dx: list[str] = field(default_factory=list)
    sex: int = 0
    newborn: bool = False
    age_days_le: int | None = None
    bw_lo: int | None = None
    bw_hi: int | None = None
    regions: tuple[int, list[str]] | None = None


class CaseMix:
    """The scheme read as a generator needs it: verified code templates per ADRG, code pools
    for secondary diagnoses and procedures, and synthetic cost/LOS norms per ADRG.

    Built once per scheme (about a second for CHS-DRG 1.1); independent of the seed.
    """

    def __init__(self, scheme: Scheme, *, max_templates: int = 12, tries: int = 60):
        self.scheme = scheme
        files = scheme.manifest["files"]
        assert scheme.path is not None
        mdc_doc = json.loads((scheme.path / files["mdc"]).read_text(encoding="utf-8"))
        adrg_doc = json.loads((scheme.path / files["adrg"]).read_text(encoding="utf-8"))
        raw_adrg = {a["code"]: a["rule"] for a in adrg_doc["adrgs"]}
        raw_entry = {m["code"]: m["entry"] for m in mdc_doc["mdcs"]}
        self._dx_names = scheme.diagnosis_names
        self._px_names = scheme.procedure_names
        self._inter_cache: dict[tuple[str, ...], list[str]] = {}
        group = scheme.grouper("raw")

        # Lists whose membership changes an MDC or ADRG beyond the principal diagnosis and
        # main procedure: secondary codes are kept out of them so that they only move the
        # CC/MCC split, never the ADRG.
        dx_sensitive: set[str] = set()
        px_sensitive: set[str] = set(scheme.or_procedures)
        for rule in [*raw_entry.values(), *raw_adrg.values()]:
            for key, value in _leaves(rule):
                if key == "any_dx_in":
                    dx_sensitive |= scheme.lists[value]
                elif key == "dx_regions_ge":
                    for lid in value["regions"]:
                        dx_sensitive |= scheme.lists[lid]
                elif key in ("main_px_in", "any_px_in"):
                    px_sensitive |= scheme.lists[value]
        # Sex- and age-specific principal lists (MDCM/N/O/P) stay out of the secondary pools,
        # otherwise QC would rightly flag obstetric codes on men.
        for code in ("MDCM", "MDCN", "MDCO", "MDCP"):
            dx_sensitive |= scheme.lists.get(f"{code}.dx", frozenset())

        def pool(common: Iterable[str], table: Mapping[str, str]) -> tuple[list[str], list[str]]:
            full = sorted(c for c in table if c in self._dx_names and c not in dx_sensitive
                          and not _sex_specific(c))
            return [c for c in common if c in table and c in full], full

        self.mcc_common, self.mcc_all = pool(_COMMON_MCC, scheme.mcc)
        self.cc_common, self.cc_all = pool(_COMMON_CC, scheme.cc)
        self.neutral = [c for c in _COMMON_NEUTRAL_DX if c in self._dx_names
                        and c not in scheme.cc and c not in scheme.mcc and c not in dx_sensitive]
        self.extra_px = [p for p in _COMMON_EXTRA_PX if p in self._px_names and p not in px_sensitive]

        # Principal diagnoses for rules that constrain only the procedure (MDCA): any code of a
        # plain body-system MDC.
        general: set[str] = set()
        for m in scheme.mdcs:
            entry = raw_entry[m.code]
            if isinstance(entry, dict) and set(entry) == {"pdx_in"} and m.code not in (
                    "MDCO", "MDCY", "MDCX", "MDCZ"):
                general |= scheme.lists[entry["pdx_in"]]
        self._general_pdx = sorted(c for c in general if c in self._dx_names and c not in dx_sensitive)

        rng = random.Random(f"templates:{scheme.id}")
        self.adrgs: list[AdrgProfile] = []
        self.unreachable: list[str] = []
        mdc_volume: dict[str, float] = {}
        for m in scheme.mdcs:
            for code in m.adrgs:
                templates: list[CaseTemplate] = []
                seen: set[CaseTemplate] = set()
                for _ in range(tries):
                    t = self._candidate(m.code, raw_entry[m.code], raw_adrg[code], rng)
                    if t is None or t in seen:
                        continue
                    seen.add(t)
                    t = _verified(t, code, group)
                    if t is not None:
                        templates.append(t)
                        if len(templates) >= max_templates:
                            break
                if not templates:
                    self.unreachable.append(code)
                    continue
                adrg = scheme.adrgs[code]
                self.adrgs.append(self._profile(adrg.code, m.code, adrg.name, templates,
                                                len(adrg.drgs) > 1))
                mdc_volume[m.code] = mdc_volume.get(m.code, 0.0) + self.adrgs[-1].volume
        # Scale ADRG volumes so that MDC shares follow _MDC_VOLUME, with a floor per MDC.
        total = sum(_MDC_VOLUME.get(m, 2.0) for m in mdc_volume)
        for a in self.adrgs:
            share = max(_MDC_VOLUME.get(a.mdc, 2.0) / total, _MIN_MDC_SHARE)
            a.volume = share * a.volume / mdc_volume[a.mdc]
        self.by_code = {a.code: a for a in self.adrgs}

    # -- templates

    def _inter(self, ids: list[str], names: Mapping[str, str]) -> list[str]:
        key = tuple(sorted(set(ids)))
        hit = self._inter_cache.get(key)
        if hit is None:
            sets = sorted((self.scheme.lists[i] for i in key), key=len)
            hit = sorted(c for c in sets[0] if c in names and all(c in s for s in sets[1:]))
            self._inter_cache[key] = hit
        return hit

    def _candidate(self, mdc: str, entry: Any, rule: Any, rng: random.Random) -> CaseTemplate | None:
        needs = _Needs(sex=2 if mdc == "MDCO" else 0)
        _walk(entry, needs, rng)
        _walk(rule, needs, rng)
        pdx_pool = self._inter(needs.pdx, self._dx_names) if needs.pdx else self._general_pdx
        if not pdx_pool:
            return None
        pdx = rng.choice(pdx_pool)
        extra: list[str] = []
        for lid in needs.any_dx:
            if pdx not in self.scheme.lists[lid]:
                codes = self._inter([lid], self._dx_names)
                if not codes:
                    return None
                extra.append(rng.choice(codes))
        if needs.regions is not None:
            k, region_ids = needs.regions
            own = [r for r in region_ids if pdx in self.scheme.lists[r]]
            others = [r for r in region_ids if r not in own and self._inter([r], self._dx_names)]
            if len(own) + len(others) < k:
                return None
            for r in rng.sample(others, k - len(own)):
                extra.append(rng.choice(self._inter([r], self._dx_names)))
        procs: list[str] = []
        if needs.main_px:
            main = self._inter(needs.main_px, self._px_names)
            if not main:
                return None
            procs.append(rng.choice(main))
        for lid in needs.any_px:
            if not any(p in self.scheme.lists[lid] for p in procs):
                codes = self._inter([lid], self._px_names)
                if not codes:
                    return None
                procs.append(rng.choice(codes))
        newborn = None
        if needs.newborn:
            lo_d, hi_d = (0, needs.age_days_le) if needs.age_days_le is not None else (29, 364)
            hi_w = (needs.bw_hi or 4201) - 1
            lo_w = needs.bw_lo or (2500 if hi_w >= 2500 else max(600, hi_w - 800))
            newborn = (lo_d, min(hi_d, 364), lo_w, hi_w)
        return CaseTemplate(pdx, tuple(extra), tuple(procs), needs.sex, newborn)

    def _profile(self, code: str, mdc: str, name: str, templates: list[CaseTemplate],
                 splits: bool) -> AdrgProfile:
        # Norms depend on the ADRG code only, so every seed and region shares them.
        r = random.Random(f"adrg:{code}")
        # Procedure-driven ADRGs (surgery, PCI, delivery by caesarean) carry the surgical cost
        # and fee profile; medical ADRGs have no required procedure.
        surgical = sum(1 for t in templates if t.procedures) * 2 > len(templates)
        cost = (21000.0 if surgical else 7000.0) * math.exp(r.gauss(0, 0.45))
        los = (9.0 if surgical else 7.5) * math.exp(r.gauss(0, 0.25)) * _MDC_LOS.get(mdc, 1.0)
        if "移植" in name:
            cost *= 9.0
            los *= 2.0
        elif "呼吸机" in name or "ECMO" in name:
            cost *= 5.0
            los *= 1.6
        nb = templates[0].newborn
        if nb is not None and nb[3] < 2000:  # very low birth weight
            cost *= 4.0
            los *= 3.0
        volume = math.exp(r.gauss(0, 1.0)) * (0.6 if surgical else 1.0)
        med, surg = _MDC_DEPT.get(mdc, ("A03", "A04"))
        shares = _FEES_SURGICAL if surgical else _FEES_MEDICAL
        return AdrgProfile(code, mdc, name, templates, surgical, cost, max(los, 1.5), volume, splits,
                           dept_medical=med, dept_surgical=surg, ventilation="呼吸机" in name,
                           fee_shares=shares, fee_largest=shares.index(max(shares)))


def _leaves(rule: Any) -> Iterator[tuple[str, Any]]:
    """Every condition of a rule tree as (key, value)."""
    if not isinstance(rule, dict):
        return
    ((key, value),) = rule.items()
    if key in ("all", "any"):
        for sub in value:
            yield from _leaves(sub)
    elif key == "not":
        yield from _leaves(value)
    else:
        yield key, value


def _walk(rule: Any, needs: _Needs, rng: random.Random) -> None:
    """Collect what a case needs to make `rule` true (one random branch of each `any`)."""
    if not isinstance(rule, dict):
        return  # true (false never appears as an ADRG or entry rule)
    ((key, value),) = rule.items()
    if key == "all":
        for sub in value:
            _walk(sub, needs, rng)
    elif key == "any":
        _walk(rng.choice(value), needs, rng)
    elif key == "pdx_in":
        needs.pdx.append(value)
    elif key == "main_px_in":
        needs.main_px.append(value)
    elif key == "any_px_in":
        needs.any_px.append(value)
    elif key == "any_dx_in":
        needs.any_dx.append(value)
    elif key == "sex_eq":
        needs.sex = int(value)
    elif key == "age_years_eq":
        needs.newborn = value == 0
    elif key == "age_days_le":
        needs.age_days_le = int(value)
    elif key == "birth_weight_lt":
        needs.bw_hi = int(value)
    elif key == "birth_weight_ge":
        needs.bw_lo = int(value)
    elif key == "dx_regions_ge":
        needs.regions = (int(value["min"]), list(value["regions"]))
    # "not" (no OR procedure) holds as we add no procedure unless a rule asks; has_mcc/has_cc
    # only split DRGs.


def _verified(t: CaseTemplate, adrg: str, group: Any) -> CaseTemplate | None:
    """The template if the engine groups it into `adrg` for every sex it may be given."""
    case: dict[str, Any] = {"age": 45, "age_days": None, "birth_weight": None,
                            "diagnoses": [t.pdx, *t.extra_dx], "procedures": list(t.procedures)}
    if t.newborn is not None:
        lo_d, hi_d, lo_w, hi_w = t.newborn
        case.update(age=0, age_days=(lo_d + hi_d) // 2, birth_weight=(lo_w + hi_w) // 2)
    ok = []
    for sex in ((t.sex,) if t.sex else (1, 2)):
        case["sex"] = sex
        if group(case).adrg == adrg:
            ok.append(sex)
    if not ok:
        return None
    if len(ok) == 1 and not t.sex:
        return CaseTemplate(t.pdx, t.extra_dx, t.procedures, ok[0], t.newborn)
    return t


# --------------------------------------------------------------------------- statistics


@dataclass
class GenerationStats:
    """Running summary of a generated region (what the CLI prints)."""

    lists: int = 0
    per_year: Counter[str] = field(default_factory=Counter)
    per_level: Counter[str] = field(default_factory=Counter)
    per_mdc: Counter[str] = field(default_factory=Counter)
    per_status: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)
    bad_kinds: Counter[str] = field(default_factory=Counter)
    outliers: Counter[str] = field(default_factory=Counter)
    hi_type: Counter[str] = field(default_factory=Counter)
    with_mcc: int = 0
    with_cc: int = 0
    newborns: int = 0
    off_site: int = 0
    planned_readmissions: int = 0
    total_cost_fen: int = 0

    def to_dict(self) -> dict[str, Any]:
        n = max(self.lists, 1)
        grouped = self.per_status.get("SUCCESS", 0) + self.per_status.get("QY", 0)
        return {
            "lists": self.lists,
            "per_year": dict(sorted(self.per_year.items())),
            "per_level": dict(sorted(self.per_level.items())),
            "per_mdc": {k: round(v / n, 4) for k, v in sorted(self.per_mdc.items())},
            "mdcs_reached": len([k for k in self.per_mdc if k.startswith("MDC")]),
            "grouped_share": round(grouped / n, 4),
            "status": dict(self.per_status),
            "mcc_share": round(self.with_mcc / n, 4),
            "cc_share": round(self.with_cc / n, 4),
            "patterns": {p: self.patterns.get(p, 0) for p in PATTERNS},
            "readmission_pairs": self.patterns.get("readmission_15d", 0) // 2,
            "bad_record_kinds": dict(sorted(self.bad_kinds.items())),
            "outliers": dict(self.outliers),
            "planned_readmissions": self.planned_readmissions,
            "hi_type": dict(self.hi_type),
            "newborns": self.newborns,
            "off_site": self.off_site,
            "mean_cost": f"{self.total_cost_fen / n / 100:.2f}",
        }


# --------------------------------------------------------------------------- generator


class RegionGenerator:
    """Iterable of settlement lists for one synthetic region; `stats` fills as it streams.

    Discharges are emitted in date order over `years` calendar years ending Dec 31 of
    `end_year`, `cases` in all. Iterate once.
    """

    def __init__(self, scheme: Scheme | Path | str, *, hospitals: int, cases: int, seed: int,
                 years: int = 3, end_year: int = 2024, case_mix: CaseMix | None = None,
                 rates: PatternRates | None = None):
        if cases < 0 or years < 1:
            raise ValueError("cases must be >= 0 and years >= 1")
        self.scheme = scheme if isinstance(scheme, Scheme) else load_scheme(scheme)
        self.mix = case_mix or CaseMix(self.scheme)
        if not self.mix.adrgs:
            raise ValueError(f"scheme {self.scheme.id}: no ADRG could be reached by generated cases")
        self.cases, self.seed, self.years, self.end_year = cases, seed, years, end_year
        self.hospitals = build_hospitals(hospitals, seed)
        self.rates = rates or PatternRates()
        self._thresholds = self.rates.thresholds()
        # Planned chemotherapy pairs: a group whose templates are all chemotherapy stays
        # (CHS-DRG RE1), else none (the pattern is then not seeded).
        chemo = [a for a in self.mix.adrgs
                 if a.templates and all(t.pdx.startswith(CHEMO_DX) for t in a.templates)]
        self._chemo = chemo[0] if chemo else None
        self.stats = GenerationStats()
        self._rng = random.Random(f"region:{seed}")
        self._tag = f"{(seed * 2654435761) % 1_000_000:06d}"
        self._group = self.scheme.grouper("raw")
        self._yuan_table = _yuan_table()
        vr = random.Random(f"fees:{seed}")
        self._fee_vectors = {
            surgical: [_normalised([x * (0.5 + vr.random()) for x in shares]) for _ in range(_VARIANTS)]
            for surgical, shares in ((True, _FEES_SURGICAL), (False, _FEES_MEDICAL))}
        # 全自费 rate per category; tertiary hospitals bill more self-pay items. Always < 1/2.
        self._own_rates = {
            tertiary: [[rate * bias for bias in _OWNPAY_BIAS]
                       for rate in ((0.02 + 0.1 * vr.random()) * (1.3 if tertiary else 1.0)
                                    for _ in range(_VARIANTS))]
            for tertiary in (True, False)}
        self._dx_names = self.scheme.diagnosis_names
        self._px_names = self.scheme.procedure_names
        self._or = self.scheme.or_procedures
        # Per hospital: 40 attending doctors (name, code) and the coder who fills the list.
        self._doctors = [[(f"医师{i + 1:03d}{k:02d}", f"D{i + 1:03d}{k:03d}") for k in range(40)]
                         for i in range(len(self.hospitals))]
        self._coders = [f"编码员{i + 1:03d}" for i in range(len(self.hospitals))]
        self._setup_calendar()
        self._setup_mix()
        self._setup_episodes()

    # -- setup

    def _setup_calendar(self) -> None:
        first = date(self.end_year - self.years + 1, 1, 1).toordinal()
        last = date(self.end_year, 12, 31).toordinal()
        self._first, self._ndays = first, last - first + 1
        # Date strings for every day a list can mention: long stays begin before the period,
        # declarations come after it.
        self._t0 = first - 400
        self._dstr = [date.fromordinal(o).isoformat() for o in range(self._t0, last + 40)]
        # Discharges per day: slow growth, fewer at weekends, a Spring Festival dip (Feb),
        # a winter peak. Cumulative targets make the total exact.
        weights = []
        for i in range(self._ndays):
            d = date.fromordinal(first + i)
            w = 1.04 ** (d.year - self.end_year) * (0.7 if d.weekday() >= 5 else 1.0)
            w *= {1: 1.08, 2: 0.8, 12: 1.08}.get(d.month, 1.0)
            weights.append(w)
        self._years_of_day = [date.fromordinal(first + i).strftime("%Y") for i in range(self._ndays)]
        total, acc, self._cum = sum(weights), 0.0, []
        for w in weights:
            acc += w
            self._cum.append(round(self.cases * acc / total))
        if self._cum:
            self._cum[-1] = self.cases

    def _setup_episodes(self) -> None:
        """Choose the hospital-level episodes: distinct (hospital, quarter) pairs among the
        last `EPISODE_QUARTERS` quarters, at hospitals busy enough for the rules to judge."""
        first_year = self.end_year - self.years + 1
        self._quarter_of_day = [(date.fromordinal(self._first + i).year - first_year) * 4
                                + (date.fromordinal(self._first + i).month - 1) // 3 for i in range(self._ndays)]
        self._quarter_last_day: dict[int, int] = {}
        for i, q in enumerate(self._quarter_of_day):
            self._quarter_last_day[q] = i
        volume = sum(h.volume for h in self.hospitals) or 1.0
        self._volume_share = [h.volume / volume for h in self.hospitals]
        adrgs = self.mix.adrgs
        weight = sum(a.volume for a in adrgs) or 1.0
        self._heavy_cost = EPISODE_HEAVY_COST * sum(a.volume * a.base_cost for a in adrgs) / weight
        # (hospital index, quarter index) -> pattern; the public list names them
        self._episodes: dict[tuple[int, int], str] = {}
        self._under_service: dict[int, int] = {}  # quarter -> hospital index
        self.episodes: list[dict[str, str]] = []
        n = self.rates.hospital_episodes
        quarters = self.years * 4
        if not n or not self.cases or quarters < 3:
            return
        rng = random.Random(f"episodes:{self.seed}")
        per_quarter = self.cases / quarters
        order = sorted(range(len(self.hospitals)), key=lambda i: (-self.hospitals[i].volume, i))
        busy = [i for i in order if per_quarter * self._volume_share[i] >= EPISODE_MIN_CASES]
        busy = busy if len(busy) >= 3 else order[:3]
        last = list(range(max(2, quarters - EPISODE_QUARTERS), quarters))
        for k, pattern in enumerate(sorted(HOSPITAL_PATTERN_RULES)):
            for j in range(n):
                for _ in range(50):
                    hi = busy[(k * n + j + rng.randrange(len(busy))) % len(busy)]
                    q = rng.choice(last)
                    if all(key[0] != hi or abs(key[1] - q) > 1 for key in self._episodes) and \
                            (pattern != "under_service" or q not in self._under_service):
                        break
                else:
                    continue
                self._episodes[(hi, q)] = pattern
                if pattern == "under_service":
                    self._under_service[q] = hi
                self.episodes.append({"hospital_code": self.hospitals[hi].code,
                                      "period": f"{first_year + q // 4}Q{q % 4 + 1}",
                                      "rule": HOSPITAL_PATTERN_RULES[pattern], "pattern": pattern})
        self.episodes.sort(key=lambda e: (e["period"], e["hospital_code"]))

    def _setup_mix(self) -> None:
        rng = random.Random(f"mix:{self.seed}")
        adrgs = self.mix.adrgs
        self._hosp_cum: list[float] = []
        acc = 0.0
        for h in self.hospitals:
            acc += h.volume
            self._hosp_cum.append(acc)
        # Each hospital has its own case mix: level filters, specialty boosts and noise.
        self._adrg_cum: list[list[float]] = []
        for h in self.hospitals:
            cum, acc = [], 0.0
            for a in adrgs:
                w = a.volume * math.exp(rng.gauss(0, 0.5))
                heavy = a.mdc == "MDCA" or a.base_cost > 60000
                if h.level == 2:
                    w *= (0.02 if heavy else 0.5) if a.surgical else 1.0
                elif h.level == 1:
                    w *= 0.0 if heavy else (0.1 if a.surgical else 1.0)
                    if a.mdc in ("MDCR", "MDCP", "MDCO"):
                        w *= 0.2
                if h.specialty == "maternity":
                    w *= 8.0 if a.mdc in ("MDCO", "MDCN", "MDCP") else 0.1
                acc += w
                cum.append(acc)
            if acc == 0.0:  # a degenerate scheme with only heavy groups: allow them anyway
                cum = [float(i + 1) for i in range(len(adrgs))]
            self._adrg_cum.append(cum)

    # -- iteration

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending: list[tuple[int, int, dict[str, Any]]] = []  # (discharge day, order, readmission)
        emitted = 0
        self._serial = 0
        self._person = 0
        self._medcas = [0] * len(self.hospitals)
        order = 0
        last = self._ndays - 1
        for day in range(self._ndays):
            target = self._cum[day]
            # Readmissions fall due first; they were counted in `room` when reserved, so the
            # fresh cases below still bring the total to exactly `cases`.
            while pending and pending[0][0] <= day:
                _, _, due = heapq.heappop(pending)
                yield self._case(day, plan=due)
                emitted += 1
            while emitted < target:
                lst, plan = self._fresh(day, room=self.cases - emitted - len(pending) - 1, last=last)
                if plan is not None:
                    order += 1
                    heapq.heappush(pending, (plan["due"], order, plan))
                yield lst
                emitted += 1

    def _fresh(self, day: int, *, room: int, last: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        r = self._rng.random
        u = r()
        pattern = next((name for bound, name in self._thresholds if u < bound), None)
        if pattern == "planned_chemo" and self._chemo is None:
            pattern = None
        plan: dict[str, Any] | None = None
        if pattern is None and self._under_service:
            q = self._quarter_of_day[day]
            hi = self._under_service.get(q)
            if hi is not None and r() < EPISODE_READMITTED * self._volume_share[hi]:
                # under service: the hospital's patient back 16-29 days later, unplanned (past the
                # split-admission window, within the 31-day readmissions), in the same quarter
                gap = 16 + int(r() * 14)
                los2 = 2 + int(r() * 7)
                if room >= 1 and day + gap + los2 <= min(last, self._quarter_last_day[q]):
                    self._serial += 1
                    plan = {"serial": self._serial, "gap": gap, "due": day + gap + los2,
                            "pattern": "readmission_31d", "force_hospital": hi}
                    pattern = "readmission_31d"
        if pattern in ("readmission_15d", "planned_chemo"):
            # Reserve the readmission now so that both lists can name each other.
            gap = 1 + int(r() * (READMISSION_WINDOW_DAYS - 1))  # 1..14 days after discharge
            los2 = 2 + int(r() * 7)
            if room >= 1 and day + gap + los2 <= last:
                self._serial += 1
                plan = {"serial": self._serial, "gap": gap, "due": day + gap + los2, "pattern": pattern}
            else:
                pattern = None
        lst = self._case(day, pattern=pattern, reserve=plan)
        if plan is not None and "person" not in plan:
            plan = None  # _case declined the pattern for this case
        return lst, plan

    # -- one case

    def _case(self, day: int, *, pattern: str | None = None, plan: dict[str, Any] | None = None,
              reserve: dict[str, Any] | None = None) -> dict[str, Any]:
        """One settlement list discharged on `day`. Written for speed: it runs a million
        times, so it draws with `random()` and keeps lookups local."""
        rng = self._rng
        r = rng.random
        mix = self.mix
        episode: str | None = None  # the hospital-level pattern of the hospital's quarter
        if plan is not None:  # the second stay of a readmission pair
            hi = plan["hospital"]
            prof: AdrgProfile = plan["adrg"]
            pattern = plan["pattern"]
            serial = plan["serial"]
        else:
            hc = self._hosp_cum
            if reserve is not None and "force_hospital" in reserve:
                hi = reserve["force_hospital"]
            else:
                hi = min(bisect.bisect_right(hc, r() * hc[-1]), len(hc) - 1)
            cum = self._adrg_cum[hi]
            prof = mix.adrgs[min(bisect.bisect_right(cum, r() * cum[-1]), len(cum) - 1)]
            episode = self._episodes.get((hi, self._quarter_of_day[day])) if self._episodes else None
            if episode == "refusing_severe" and pattern is None and prof.base_cost >= self._heavy_cost \
                    and r() < EPISODE_REFUSED:
                for _ in range(10):  # the severe patient is sent elsewhere: this hospital takes a lighter one
                    prof = mix.adrgs[min(bisect.bisect_right(cum, r() * cum[-1]), len(cum) - 1)]
                    if prof.base_cost < self._heavy_cost:
                        break
            if pattern == "planned_chemo" and self._chemo is not None:
                prof = self._chemo
            elif (pattern == "readmission_15d" and self.rates.strict
                  and any(_treatment(x) for x in prof.templates)):
                pattern, reserve = None, None  # a treatment stay is never a split admission
            if pattern == "suspicious_cc" and not prof.splits:
                pattern = None  # only a split ADRG can be lifted by a CC
            self._serial += 1
            serial = self._serial
        h = self.hospitals[hi]
        mdc = prof.mdc
        if plan is not None:
            person = plan["person"]
            fits = [x for x in prof.templates if x.sex in (0, person["sex"])] or prof.templates
            t = fits[_skewed(len(fits), r())]
            person["age"] = _age_on(person["birth"], date.fromordinal(self._first + plan["adm_day"]))
        else:
            t = prof.templates[_skewed(len(prof.templates), r())]
            person = self._new_person(r, t, mdc, h)
            if pattern in PAIR_PATTERNS and t.newborn is not None:
                pattern = None  # a newborn's second stay would group by another age rule
                reserve = None
        sex, age, nwb_days, bw = person["sex"], person["age"], person["nwb_age"], person["bw"]

        # Complications: counted MCC/CC honour the exclusion tables (scheme README).
        level_mod = _LEVEL_CC[h.level]
        dx = [t.pdx, *t.extra_dx]
        u = r()
        severity = 0
        if pattern == "suspicious_cc":
            severity = 2 if u < 0.5 else 1
        elif pattern != "short_low_cost":
            if u < MCC_SHARE * level_mod:
                severity = 2
            elif u < (MCC_SHARE + CC_SHARE) * level_mod:
                severity = 1
            elif episode == "hospital_upcoding" and pattern is None and r() < EPISODE_EXTRA_CC:
                severity = 1 + (r() < 0.4)  # the hospital codes complications it did not before
        if severity:
            code = self._complication(r, t.pdx, severity)
            if code is None:
                severity = 0
            else:
                dx.append(code)
        neutral = mix.neutral
        if pattern != "suspicious_cc" and neutral and nwb_days is None:
            for _ in range(_NEUTRAL_COUNTS[int(r() * 6)] + (age > 60)):
                c = neutral[int(r() * len(neutral))]
                if c not in dx:
                    dx.append(c)
        procs = list(t.procedures)
        if mix.extra_px and r() < 0.35:
            p = mix.extra_px[int(r() * len(mix.extra_px))]
            if p not in procs:
                procs.append(p)

        case = {"sex": sex, "age": age, "age_days": nwb_days, "birth_weight": bw,
                "diagnoses": dx, "procedures": procs}
        result = self._group(case)
        if pattern == "suspicious_cc" and self._group({**case, "diagnoses": dx[:-1]}).drg == result.drg:
            pattern = None  # this ADRG does not split on that complication: not an upcoding case
        suffix = result.drg[-1:] if result.grouped else "9"

        # Length of stay and cost (lognormal, scaled by DRG split and hospital).
        exp_los = prof.base_los * _DRG_LOS.get(suffix, 1.0) * h.los_factor
        mean_cost = prof.base_cost * _DRG_COST.get(suffix, 1.0) * h.cost_factor
        outlier = None
        if pattern == "short_low_cost":
            los = 1 + (r() < 0.4)
            cost = mean_cost * (0.12 + 0.24 * r())
            if self.rates.strict:  # below 0.25 of the group's tertiary-level mean
                cost = min(cost, prof.base_cost * _DRG_COST.get(suffix, 1.0) * (0.1 + 0.15 * r()))
        elif pattern == "suspicious_cc":
            # Cost of a case without the complication, below that lower group's mean.
            base = prof.base_cost * _DRG_COST["5"] * h.cost_factor
            los = max(1, round(exp_los * (0.5 + 0.4 * r())))
            cost = base * (0.55 + 0.35 * r())
            if self.rates.strict:  # below 0.45 of the lower group's tertiary-level mean
                cost = min(cost, prof.base_cost * _DRG_COST["5"] * (0.25 + 0.2 * r()))
        else:
            gauss = rng.gauss
            los = max(1, min(180, round(exp_los * math.exp(gauss(0, 0.45)))))
            cost = mean_cost * (los / exp_los) ** 0.5 * math.exp(gauss(0, 0.3))
            v = r()
            if v < HIGH_OUTLIER_SHARE:
                outlier = "high"
                cost *= 3.0 + 3.0 * r()
                los = min(180, los * 2)
            elif v < HIGH_OUTLIER_SHARE + LOW_OUTLIER_SHARE:
                outlier = "low"
                cost *= 0.2 + 0.18 * r()
            if episode == "under_service" and outlier is None and pattern is None and r() < EPISODE_LOW:
                outlier = "low"  # discharged before the care was done
                cost = mean_cost * (0.15 + 0.2 * r())
        total = max(30000, int(cost * 100))  # fen; at least 300 yuan

        if plan is not None:
            adm = plan["adm_day"]
            los = day - adm
            related = plan["index_setl_id"]
        else:
            adm = day - los
            person["birth"] = self._birth(r, person, adm)
            related = None
            if reserve is not None and pattern in PAIR_PATTERNS:
                related = f"S{self._tag}{reserve['serial']:09d}"
        lst = self._build(r, h, hi, prof, t, person, dx, procs, day, adm, los, total,
                          severity, serial, pattern, related, episode)
        if reserve is not None and pattern in PAIR_PATTERNS:
            # The readmission: same person, same hospital and ADRG, admitted 1-14 days later.
            reserve.update(hospital=hi, adrg=prof, person=person,
                           adm_day=day + reserve["gap"], index_setl_id=lst["setlinfo"]["setl_id"])

        st = self.stats
        st.lists += 1
        st.per_year[self._years_of_day[day]] += 1
        st.per_level[LEVEL_NAMES[h.level]] += 1
        st.per_mdc[result.mdc] += 1
        st.per_status[result.status.value] += 1
        st.with_mcc += severity == 2
        st.with_cc += severity == 1
        st.total_cost_fen += total
        st.newborns += nwb_days is not None
        if outlier:
            st.outliers[outlier] += 1
        s = lst["setlinfo"]
        if pattern is not None:
            syn = s["_synthetic"]
            st.patterns[syn["pattern"]] += 1
            if "defect" in syn:
                st.bad_kinds[syn["defect"]] += 1
        st.hi_type[s["hi_type"]] += 1
        st.off_site += s["insuplc"] != PREFECTURE
        st.planned_readmissions += s["days_rinp_flag_31"] == "2"
        return lst

    def _complication(self, r: Any, pdx: str, severity: int) -> str | None:
        """A secondary diagnosis that counts as MCC (2) or CC (1) for this principal."""
        mix = self.mix
        table = mix.scheme.mcc if severity == 2 else mix.scheme.cc
        common = mix.mcc_common if severity == 2 else mix.cc_common
        full = mix.mcc_all if severity == 2 else mix.cc_all
        excl = mix.scheme.cc_exclusion.get(pdx)
        for _ in range(6):
            src = common if common and r() < 0.7 else full
            if not src:
                return None
            code = src[int(r() * len(src))]
            if code != pdx and (excl is None or table[code] != excl):
                return code
        return None

    def _new_person(self, r: Any, t: CaseTemplate, mdc: str, h: Hospital) -> dict[str, Any]:
        self._person += 1
        nwb_age = bw = None
        if t.newborn is not None:
            lo_d, hi_d, lo_w, hi_w = t.newborn
            nwb_age = lo_d + int(r() * (hi_d - lo_d + 1))
            bw = lo_w + int(r() * (hi_w - lo_w + 1))
            sex = t.sex or 1 + (r() < 0.48)
            age = 0
        else:
            sex = t.sex or (1 if r() < _MALE_SHARE.get(mdc, 0.5) else 2)
            mean, sd, lo, hi = _MDC_AGE.get(mdc, _DEFAULT_AGE)
            if lo < 14 and r() < 0.08:
                age = max(lo, 1) + int(r() * (13 - max(lo, 1)))  # children in general wards
            else:
                age = min(hi, max(lo, round(self._rng.gauss(mean, sd))))
        if age < 18:
            hi_type = "390" if r() < 0.95 else "310"
        else:
            hi_type = "310" if r() < (0.55 if age < 60 else 0.4) else "390"
        insuplc = PREFECTURE if r() >= 0.04 else _OFF_SITE[int(r() * len(_OFF_SITE))]
        return {"n": self._person, "sex": sex, "age": age, "nwb_age": nwb_age, "bw": bw,
                "hi_type": hi_type, "insuplc": insuplc,
                "area": h.region if insuplc == PREFECTURE else insuplc}

    def _birth(self, r: Any, person: dict[str, Any], adm: int) -> date:
        """Birth date, fixed at the first stay (a readmitted person keeps it). The day count
        keeps the age in whole years exactly as drawn, whatever the leap years."""
        adm_o = self._first + adm
        if person["nwb_age"] is not None:
            return date.fromordinal(adm_o - person["nwb_age"])
        age = person["age"]
        return date.fromordinal(adm_o - age * 365 - age // 4 - 1 - int(r() * 363))

    # -- the list itself

    def _build(self, r: Any, h: Hospital, hi: int, prof: AdrgProfile,
               t: CaseTemplate, person: dict[str, Any], dx: list[str], procs: list[str],
               day: int, adm: int, los: int, total: int, severity: int, serial: int,
               pattern: str | None, related: str | None, episode: str | None = None) -> dict[str, Any]:
        dstr, off = self._dstr, self._first - self._t0
        adm_date, dscg_date = dstr[off + adm], dstr[off + day]
        adm_time = adm_date + _TIMES_ADM[int(r() * len(_TIMES_ADM))]
        dscg_time = dscg_date + _TIMES_DSCG[int(r() * len(_TIMES_DSCG))]
        if adm == day and dscg_time < adm_time:
            adm_time, dscg_time = dscg_time, adm_time  # same-day stay: keep the order
        sex, age, nwb = person["sex"], person["age"], person["nwb_age"]
        birth: date = person["birth"]
        tag = self._tag
        setl_id = f"S{tag}{serial:09d}"
        pn = person["n"]
        psn_no = f"P{tag}{pn:09d}"
        self._medcas[hi] += 1
        certno = person.get("certno")
        if certno is None:
            certno = person["certno"] = _certno(person["area"], birth, (pn % 500) * 2 + (1 if sex == 1 else 2))
        caty = prof.dept_surgical if prof.surgical else prof.dept_medical
        if 0 < age < 14 and nwb is None:
            caty = "A07"
        doctor = self._doctors[hi][int(r() * 40)]
        # Planned readmissions (flag 2) are the negatives of the split-admission rule.
        planned = ("2" if pattern == "planned_chemo"
                   else "2" if pattern is None and r() < PLANNED_READMISSION_SHARE else "1")
        w = r()
        death = 0.04 if severity == 2 else 0.004
        dscg_way = ("5" if w < death else "2" if w < death + 0.02 else "4" if w < death + 0.04
                    else "9" if w < death + 0.05 else "1")
        if episode == "refusing_severe" and dscg_way == "1" and r() < EPISODE_LEFT:
            dscg_way = "2" if r() < 0.6 else "4"  # transferred out, or left against advice
        vent = "0/0/0"
        if prof.ventilation:
            vent = f"{4 + int(r() * max(1, min(los, 20) - 3))}/{int(r() * 24)}/{int(r() * 60)}"

        names = self._dx_names
        diseinfo = [{"diag_type": "1", "diag_code": dx[0], "diag_name": names.get(dx[0], ""),
                     "maindiag_flag": "1", "adm_cond_type": "1"}]
        for code in dx[1:]:
            diseinfo.append({"diag_type": "1", "diag_code": code, "diag_name": names.get(code, ""),
                             "maindiag_flag": "0", "adm_cond_type": "1" if r() < 0.8 else "4"})
        oprninfo = []
        if procs:
            pnames, or_set = self._px_names, self._or
            op_day = dstr[off + min(adm + 1, day)] + " "
            dr_name, dr_code = doctor
            for i, code in enumerate(procs):
                begin = op_day + _HOURS[9 + min(i, 12)]
                oprninfo.append({
                    "oprn_oprt_type": "1" if i == 0 else "2", "oprn_oprt_code": code,
                    "oprn_oprt_name": pnames.get(code, ""), "oprn_oprt_date": begin,
                    "anst_way": ("01" if r() < 0.8 else "02") if code in or_set else "",
                    "oper_dr_name": dr_name, "oper_dr_code": dr_code,
                    "oprn_oprt_begntime": begin, "oprn_oprt_endtime": op_day + _HOURS[10 + min(i, 12)]})
        icuinfo = []
        if severity == 2 and h.level >= 2 and los >= 2 and r() < 0.25:
            icu_days = 1 + int(r() * max(1, min(los - 1, 10)))
            icuinfo.append({"scs_cutd_ward_type": "2" if nwb is not None else "1",
                            "scs_cutd_inpool_time": dstr[off + adm] + " 20:00:00",
                            "scs_cutd_exit_time": dstr[off + adm + icu_days] + " 10:00:00",
                            "scs_cutd_sum_dura": f"{icu_days - 1}/14/0"})

        # Fees: 14 categories summing exactly to the total (fen); each split into 甲类, 乙类
        # and 全自费 parts that sum to the category amount.
        # Noisy share vectors and self-pay rates are drawn from tables made at setup: the
        # same distributions, a few microseconds cheaper per list.
        fracs = self._fee_vectors[prof.surgical][int(r() * _VARIANTS)]
        amts = [int(total * f) for f in fracs]
        amts[prof.fee_largest] += total - sum(amts)
        own_rates = self._own_rates[h.level == 3][int(r() * _VARIANTS)]
        if pattern == "cost_shifting":  # 全自费 items pushed onto the patient: ~0.3-0.45 of the cost
            rate = 0.3 + 0.1 * r()
            own_rates = [min(0.9, rate * bias) for bias in _OWNPAY_BIAS]
        b_rate = 0.2 + 0.2 * r()
        iteminfo = []
        own_sum = b_sum = 0
        y, ny = self._yuan_table, len(self._yuan_table)
        for k, amt in enumerate(amts):  # a plain loop: measurably faster than comprehensions here
            own = int(amt * own_rates[k])
            b = int((amt - own) * b_rate)
            a = amt - own - b
            own_sum += own
            b_sum += b
            iteminfo.append({
                "med_chrgitm": FEE_CATEGORIES[k], "amt": y[amt] if amt < ny else _yuan(amt),
                "claa_sumfee": y[a] if a < ny else _yuan(a), "clab_amt": y[b] if b < ny else _yuan(b),
                "fulamt_ownpay_amt": y[own] if own < ny else _yuan(own), "oth_amt": "0.00"})

        # Patient shares and fund payments (illustrative local policy: deductible, 乙类 first
        # self-pay 10 %, co-insurance by level and insurance type). Invariants:
        # Σ fund_payamt + psn_selfpay + psn_ownpay = medfee_sumamt; acct_pay + psn_cashpay =
        # psn_selfpay + psn_ownpay.
        employee = person["hi_type"] == "310"
        policy = total - own_sum
        deductible, coins_rate = _POLICY[employee][h.level]
        deductible = min(policy, deductible)
        first_self = b_sum // 10
        selfpay = min(policy, deductible + first_self
                      + int(max(0, policy - deductible - first_self) * coins_rate))
        fund = policy - selfpay
        payinfo = []
        if employee:
            big = max(0, fund - 15_000_000)  # above 150,000 yuan: 大额医疗费用补助
            payinfo.append(("310100", fund - big))
            if big:
                payinfo.append(("330100", big))
            if r() < 0.06:  # civil servants: 公务员医疗补助 takes part of the self-pay
                sub = selfpay // 2
                payinfo.append(("320100", sub))
                selfpay -= sub
        else:
            payinfo.append(("390100", fund))
            if selfpay > 1_500_000:  # 居民大病保险 above 15,000 yuan of self-pay
                sub = (selfpay - 1_500_000) * 6 // 10
                payinfo.append(("390200", sub))
                selfpay -= sub
            if r() < 0.04:  # 医疗救助 for low-income residents
                sub = selfpay // 2
                payinfo.append(("610100", sub))
                selfpay -= sub
        acct = 0
        if employee and r() < 0.5:
            acct = min(selfpay + own_sum, int(r() * 300_000))
        cash = selfpay + own_sum - acct

        bw_str = str(bw) if (bw := person["bw"]) is not None else ""
        setlinfo: dict[str, Any] = {
            "mdtrt_id": f"M{tag}{serial:09d}", "setl_id": setl_id, "psn_no": psn_no,
            "medcasno": f"BA{self._medcas[hi]:08d}", "fixmedins_code": h.code,
            "fixmedins_name": h.name, "hi_setl_lv": _LEVEL_STR[h.level], "hi_no": psn_no,
            "dcla_time": dstr[off + day + 1 + int(r() * 9)] + _TIMES_DCLA[int(r() * len(_TIMES_DCLA))],
            "psn_name": f"患者{pn:06d}", "gend": _SEX_STR[sex],
            "brdy": birth.isoformat(), "age": str(age), "ntly": "CHN",
            "nwb_age": str(nwb) if nwb is not None else "",
            "naty": "01" if pn % 23 else "02", "patn_cert_type": "01", "certno": certno,
            "hi_type": person["hi_type"], "insuplc": person["insuplc"],
            "nwb_bir_wt": bw_str, "nwb_adm_wt": str(bw + int(r() * 200) - 50) if bw is not None else "",
            "ipt_med_type": "1", "adm_way": "2" if r() < 0.3 else "1", "trt_type": "1",
            "adm_time": adm_time, "adm_caty": caty, "dscg_time": dscg_time, "dscg_caty": caty,
            "act_ipt_days": str(los), "wm_dise_code": dx[0], "diag_code_cnt": str(len(dx)),
            "oprn_oprt_code_cnt": str(len(procs)), "vent_used_dura": vent, "dscg_way": dscg_way,
            "days_rinp_flag_31": planned, "chfpdr_name": doctor[0], "chfpdr_code": doctor[1],
            "setl_begn_date": adm_date, "setl_end_date": dscg_date, "hi_paymtd": "4",
            "medins_fill_dept": "病案科", "medins_fill_psn": self._coders[hi],
            "bill_code": "B001", "bill_no": f"{serial:010d}", "biz_sn": f"{tag}{serial:09d}",
            "psn_selfpay": _yuan(selfpay), "psn_ownpay": _yuan(own_sum), "acct_pay": _yuan(acct),
            "psn_cashpay": _yuan(cash), "medfee_sumamt": _yuan(total),
        }
        lst: dict[str, Any] = {
            "setlinfo": setlinfo,
            "payinfo": [{"fund_pay_type": k, "fund_payamt": _yuan(v)} for k, v in payinfo],
            "opspdiseinfo": [], "diseinfo": diseinfo, "iteminfo": iteminfo,
            "oprninfo": oprninfo, "icuinfo": icuinfo,
        }
        if pattern is not None:
            synthetic: dict[str, Any] = {"pattern": pattern, "related_setl_id": related}
            if pattern == "bad_record":
                synthetic["defect"] = _break(self._rng, lst, t, prof.mdc)
            setlinfo["_synthetic"] = synthetic
        return lst


def _break(rng: random.Random, lst: dict[str, Any], t: CaseTemplate, mdc: str) -> str:
    """Spoil a list in one documented way; returns the defect's name."""
    s = lst["setlinfo"]
    kinds = ["dscg_before_adm", "los_mismatch", "fee_sum_mismatch", "unknown_diag_code", "missing_gend"]
    if t.sex or mdc in ("MDCM", "MDCN", "MDCO"):
        kinds.append("sex_conflict")
    if s["nwb_bir_wt"]:
        kinds.append("newborn_weight_missing")
    kind = kinds[rng.randrange(len(kinds))]
    if kind == "dscg_before_adm":
        s["adm_time"], s["dscg_time"] = s["dscg_time"], s["adm_time"]
        s["setl_begn_date"], s["setl_end_date"] = s["setl_end_date"], s["setl_begn_date"]
        if s["adm_time"] == s["dscg_time"]:
            s["dscg_time"] = s["dscg_time"][:11] + "00:00:00"
            s["adm_time"] = s["adm_time"][:11] + "23:45:00"
    elif kind == "los_mismatch":
        s["act_ipt_days"] = str(int(s["act_ipt_days"]) + rng.randint(3, 9))
    elif kind == "fee_sum_mismatch":
        fen = _fen(s["medfee_sumamt"]) + rng.randint(1000, 50000)
        s["medfee_sumamt"] = _yuan(fen)
    elif kind == "unknown_diag_code":
        lst["diseinfo"][0]["diag_code"] = s["wm_dise_code"] = "Z99.999x999"
    elif kind == "missing_gend":
        s["gend"] = ""
    elif kind == "sex_conflict":
        s["gend"] = "1" if s["gend"] == "2" else "2"
    elif kind == "newborn_weight_missing":
        s["nwb_bir_wt"] = s["nwb_adm_wt"] = ""
    return kind


_YUAN_TABLE: list[str] = []
_VARIANTS = 512


def _normalised(ws: list[float]) -> tuple[float, ...]:
    total = sum(ws)
    return tuple(w / total for w in ws)


def _yuan_table() -> list[str]:
    """Money strings for 0 .. 1,999.99 yuan, built once (~10 MB): formatting fee amounts is
    the generator's hottest spot, and most category amounts fall in this range."""
    if not _YUAN_TABLE:
        _YUAN_TABLE.extend(str(x // 100) + _CENTS[x % 100] for x in range(200_000))
    return _YUAN_TABLE


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _yuan(fen: int) -> str:
    """Fen (int) to the national string form, e.g. 128683 -> "1286.83"."""
    return str(fen // 100) + _CENTS[fen % 100]


def _fen(yuan: str) -> int:
    whole, _, frac = yuan.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


@functools.cache
def _harmonic(n: int) -> tuple[float, ...]:
    total, out = 0.0, []
    for k in range(n):
        total += 1.0 / (k + 1)
        out.append(total)
    return tuple(x / total for x in out)


def _skewed(n: int, u: float) -> int:
    """An index in range(n), the k-th drawn with weight 1/(k+1): real case mixes are skewed
    (a few diagnosis–procedure combinations make most stays), which DIP catalogues rely on."""
    return min(bisect.bisect_right(_harmonic(n), u), n - 1)


def _sex_specific(code: str) -> bool:
    """A diagnosis intake QC accepts for one sex only (pregnancy, genital organs, …)."""
    from services.ingest.domain.qc import SEX_RULES

    return any(code in rule.codes for rule in SEX_RULES)


def _certno(area: str, birth: date, seq: int) -> str:
    """A well-formed but fictitious 18-digit resident ID (GB 11643 check digit)."""
    body = f"{area}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq % 1000:03d}"
    return body + _ID_CHECK[sum(map(operator.mul, map(int, body), _ID_WEIGHTS)) % 11]


# --------------------------------------------------------------------------- public API


def generate_region(scheme_path: Path, *, hospitals: int, years: int = 3, cases: int, seed: int,
                    end_year: int = 2024) -> Iterator[dict[str, Any]]:
    """Stream `cases` synthetic settlement lists (4101 `input` nodes) for a region.

    Same arguments, same output. Use `RegionGenerator` directly to also get the hospitals
    and the running `stats`.
    """
    return iter(RegionGenerator(scheme_path, hospitals=hospitals, years=years, cases=cases,
                                seed=seed, end_year=end_year))


def grouping_case(lst: Mapping[str, Any]) -> dict[str, Any]:
    """The grouper's input for a settlement list (scheme README, "Input record").

    Lenient on purpose: a missing or non-numeric field becomes null, which the engine reports
    as CHECK_FAILED rather than raising.
    """
    s = lst["setlinfo"]

    def num(v: Any) -> int | None:
        return int(v) if isinstance(v, str) and v.isdigit() else None

    diseases = sorted(lst.get("diseinfo", []), key=lambda d: d.get("maindiag_flag") != "1")
    ops = sorted(lst.get("oprninfo", []), key=lambda o: o.get("oprn_oprt_type") != "1")
    return {"sex": num(s.get("gend")), "age": num(s.get("age")), "age_days": num(s.get("nwb_age")),
            "birth_weight": num(s.get("nwb_bir_wt")),
            "diagnoses": [d["diag_code"] for d in diseases],
            "procedures": [o["oprn_oprt_code"] for o in ops]}


def generate_stats(lists: Iterable[Mapping[str, Any]], scheme: Scheme) -> GenerationStats:
    """Summarise any stream of settlement lists (e.g. a generated file read back): regroups
    each list with `scheme` and counts CC/MCC with its exclusion tables."""
    st = GenerationStats()
    group = scheme.grouper("raw")
    levels = {"3": "三级", "2": "二级", "1": "一级"}
    for lst in lists:
        s = lst["setlinfo"]
        case = grouping_case(lst)
        r = group(case)
        st.lists += 1
        st.per_year[s.get("setl_end_date", "")[:4]] += 1
        st.per_level[levels.get(s.get("hi_setl_lv", ""), "?")] += 1
        st.per_mdc[r.mdc] += 1
        st.per_status[r.status.value] += 1
        dx = case["diagnoses"]
        excl = scheme.cc_exclusion.get(dx[0]) if dx else None
        mcc = any(c in scheme.mcc and scheme.mcc[c] != excl for c in dx[1:])
        cc = not mcc and any(c in scheme.cc and scheme.cc[c] != excl for c in dx[1:])
        st.with_mcc += mcc
        st.with_cc += cc
        st.total_cost_fen += _fen(s.get("medfee_sumamt") or "0")
        st.newborns += case["age_days"] is not None
        st.hi_type[s.get("hi_type", "")] += 1
        st.off_site += s.get("insuplc") != PREFECTURE
        st.planned_readmissions += s.get("days_rinp_flag_31") == "2"
        syn = s.get("_synthetic")
        if syn:
            st.patterns[syn["pattern"]] += 1
            if syn.get("defect"):
                st.bad_kinds[syn["defect"]] += 1
    return st
