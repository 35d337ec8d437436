"""Helpers shared by the grouper tests: where the shared data lives, and a tiny scheme
written to a temporary folder in code (so validation and condition tests need no data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from paths import SHARED

# DRGDIP_SHARED overrides; default: <repo>/../shared, computed from this file's location.
SCHEME_IDS = ("chs-drg-1.1", "chs-drg-1.0", "quanzhou-2023")


def scheme_path(scheme_id: str) -> Path:
    return SHARED / "schemes" / scheme_id


def oracle_cases(scheme_id: str) -> list[dict[str, Any]]:
    path = SHARED / "testdata" / f"{scheme_id}-cases.jsonl"
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


MANIFEST_FILES = {
    "mdc": "mdc.json",
    "adrg": "adrg.json",
    "drg": "drg.json",
    "lists": "lists.json",
    "diagnoses": "diagnoses.tsv",
    "procedures": "procedures.tsv",
    "diagnosis_map": "diagnosis_map.tsv",
    "procedure_map": "procedure_map.tsv",
    "cc": "cc.tsv",
    "mcc": "mcc.tsv",
    "cc_exclusion": "cc_exclusion.tsv",
    "or_procedures": "or_procedures.tsv",
}

TSV_HEADERS = {
    "diagnoses": ("code", "name"),
    "procedures": ("code", "name"),
    "diagnosis_map": ("from", "to"),
    "procedure_map": ("from", "to"),
    "cc": ("code", "exclusion_table"),
    "mcc": ("code", "exclusion_table"),
    "cc_exclusion": ("principal_code", "exclusion_table"),
    "or_procedures": ("code", "name"),
}


def minimal_scheme_data() -> dict[str, Any]:
    """A valid two-MDC scheme.

    MDCA (entry pdx_in MA.dx): A11 (main_px_in A11.px; split MCC / CC / none),
    A21 (pdx_in A21.dx; no split). MDCB (entry pdx_in MB.dx): B11 (true).
    Diagnoses D1, D2 (MDCA), D3 (MDCB); MCC M1 (table t1), M2 (table t2); CC C1 (t1).
    D1's exclusion table is t1, so M1 and C1 do not count with principal D1.
    """
    return {
        "manifest": {"id": "mini", "title": "minimal test scheme", "format_version": 1,
                     "files": dict(MANIFEST_FILES)},
        "mdc": {
            "scheme": "mini",
            "no_group_result": "0000",
            "mdcs": [
                {"code": "MDCA", "order": 1, "name": "甲", "entry": {"pdx_in": "MA.dx"},
                 "adrgs": ["A11", "A21"],
                 "ambiguous": {"enabled": False, "position": 1, "rule": {"any_px_in": "OR"},
                               "drg": "AQY"}},
                {"code": "MDCB", "order": 2, "name": "乙", "entry": {"pdx_in": "MB.dx"},
                 "adrgs": ["B11"]},
            ],
        },
        "adrg": {"scheme": "mini", "adrgs": [
            {"code": "A11", "name": "甲手术", "mdc": "MDCA", "order": 1,
             "rule": {"main_px_in": "A11.px"}, "drgs": ["A111", "A113", "A115"]},
            {"code": "A21", "name": "甲内科", "mdc": "MDCA", "order": 2,
             "rule": {"pdx_in": "A21.dx"}, "drgs": ["A219"]},
            {"code": "B11", "name": "乙", "mdc": "MDCB", "order": 1, "rule": True,
             "drgs": ["B119"]},
        ]},
        "drg": {"scheme": "mini", "drgs": [
            {"code": "A111", "name": "甲手术，伴严重并发症或合并症", "adrg": "A11", "mdc": "MDCA",
             "order": 1, "rule": {"has_mcc": True}},
            {"code": "A113", "name": "甲手术，伴并发症或合并症", "adrg": "A11", "mdc": "MDCA",
             "order": 2, "rule": {"any": [{"has_mcc": True}, {"has_cc": True}]}},
            {"code": "A115", "name": "甲手术，不伴并发症或合并症", "adrg": "A11", "mdc": "MDCA",
             "order": 3, "rule": True},
            {"code": "A219", "name": "甲内科", "adrg": "A21", "mdc": "MDCA", "order": 1,
             "rule": True},
            {"code": "B119", "name": "乙", "adrg": "B11", "mdc": "MDCB", "order": 1, "rule": True},
        ]},
        "lists": {"MA.dx": ["D1", "D2"], "MB.dx": ["D3"], "A11.px": ["P1"],
                  "A21.dx": ["D2"], "OR": ["P1", "P2"]},
        "diagnoses": [("D1", "诊断一"), ("D2", "诊断二"), ("D3", "诊断三"), ("M1", "严重一"),
                      ("M2", "严重二"), ("C1", "并发一")],
        "procedures": [("P1", "手术一"), ("P2", "手术二")],
        "diagnosis_map": [("D1", "D1"), ("D2", "D2"), ("D3", "D3"), ("M1", "M1"), ("M2", "M2"),
                          ("C1", "C1"), ("X1", "D2"), ("X2", "X1")],
        "procedure_map": [("P1", "P1"), ("P2", "P2"), ("Q1", "P1")],
        "cc": [("C1", "t1")],
        "mcc": [("M1", "t1"), ("M2", "t2")],
        "cc_exclusion": [("D1", "t1")],
        "or_procedures": [("P1", "手术一"), ("P2", "手术二")],
    }


def write_scheme(root: Path, data: dict[str, Any] | None = None) -> Path:
    """Write scheme data (default: `minimal_scheme_data()`) as a scheme folder."""
    data = data if data is not None else minimal_scheme_data()
    root.mkdir(parents=True, exist_ok=True)
    (root / "scheme.json").write_text(json.dumps(data["manifest"], ensure_ascii=False), "utf-8")
    for key in ("mdc", "adrg", "drg", "lists"):
        (root / MANIFEST_FILES[key]).write_text(json.dumps(data[key], ensure_ascii=False), "utf-8")
    for key, header in TSV_HEADERS.items():
        rows = [header, *data[key]]
        text = "".join(f"{a}\t{b}\n" for a, b in rows)
        (root / MANIFEST_FILES[key]).write_text(text, "utf-8")
    return root


def rule_scheme_data(rule: Any, lists: dict[str, list[str]] | None = None,
                     evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Minimal data whose single MDC (entry `true`) has one ADRG X11 with `rule`:
    a case groups to X119 when the rule holds, else FAIL."""
    data = minimal_scheme_data()
    data["lists"].update(lists or {})
    data["mdc"]["mdcs"] = [
        {"code": "MDCX", "order": 1, "name": "测试", "entry": True, "adrgs": ["X11"]}
    ]
    if evaluation is not None:
        data["mdc"]["evaluation"] = evaluation
    data["adrg"]["adrgs"] = [
        {"code": "X11", "name": "测试组", "mdc": "MDCX", "order": 1, "rule": rule, "drgs": ["X119"]}
    ]
    data["drg"]["drgs"] = [
        {"code": "X119", "name": "测试组", "adrg": "X11", "mdc": "MDCX", "order": 1, "rule": True}
    ]
    return data


def case(**kw: Any) -> dict[str, Any]:
    """A valid adult case; keyword arguments override fields."""
    base: dict[str, Any] = {"sex": 1, "age": 40, "age_days": None, "birth_weight": None,
                            "diagnoses": ["D1"], "procedures": []}
    base.update(kw)
    return base
