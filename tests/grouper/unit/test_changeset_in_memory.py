"""A change set checked before anything is written (the negotiation of a local scheme): the
local scheme compiled in memory groups exactly as the folder a build writes, and the summary
and migration table say what changed and which cases move."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grouper_testkit import oracle_cases, scheme_path

from services.grouper.domain import (
    Scheme,
    apply_change_set,
    change_summary,
    compile_local_scheme,
    diff_schemes,
    load_scheme,
    migration_table,
    parse_change_set,
    read_scheme_docs,
    write_scheme_folder,
)

AGE_SPLIT = {"op": "split_drg", "drg": "TB19", "by": "age", "into": [
    {"code": "TB1C", "name": "精神病患者的手术，年龄<18岁", "max": 18},
    {"code": "TB1E", "name": "精神病患者的手术，年龄≥65岁", "min": 65},
    {"code": "TB1F", "name": "精神病患者的手术，年龄18-64岁"}]}
MERGE = {"op": "merge_drgs", "drgs": ["XJ13", "XJ15"], "into": {"code": "XJ19", "name": "合并组"}}
RENAME = {"op": "rename", "group": "IZ29", "name": "骨骼肌肉其他疾患（本地）"}


def _raw(*ops: dict[str, Any]) -> bytes:
    return json.dumps({"id": "local-1", "name": "本地分组", "base": "chs-drg-1.1", "region": "350500",
                       "author": "医保局", "operations": list(ops)}, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def national() -> Scheme:
    return load_scheme(scheme_path("chs-drg-1.1"))


def test_the_scheme_compiled_in_memory_groups_as_the_built_folder(tmp_path, national) -> None:
    raw = _raw(AGE_SPLIT, MERGE, RENAME)
    docs = apply_change_set(national, read_scheme_docs(national), parse_change_set(raw))
    in_memory = compile_local_scheme(national, docs)
    write_scheme_folder(national, docs, tmp_path / "local", raw)
    folder = load_scheme(tmp_path / "local")
    assert in_memory.path is None and (in_memory.id, in_memory.title) == (folder.id, folder.title)
    assert in_memory.counts() == folder.counts()
    for case in oracle_cases("chs-drg-1.1"):
        for mode in ("raw", "mapped"):
            assert in_memory.group(case, code_mode=mode) == folder.group(case, code_mode=mode), case["id"]


def test_the_summary_and_the_migration_table(national) -> None:
    raw = _raw(AGE_SPLIT, MERGE, RENAME)
    local = compile_local_scheme(national, apply_change_set(national, read_scheme_docs(national),
                                                            parse_change_set(raw)))
    cases = oracle_cases("chs-drg-1.1")
    d = diff_schemes(national, local, cases)
    summary = change_summary(d)
    assert summary["split"] == [{"adrg": "TB1", "before": ["TB19"], "after": ["TB1C", "TB1E", "TB1F"]}]
    assert summary["merged"] == [{"adrg": "XJ1", "before": ["XJ13", "XJ15"], "after": ["XJ19"]}]
    assert [(r["code"], r["after"]) for r in summary["renamed"]] == [("IZ29", "骨骼肌肉其他疾患（本地）")]
    assert sorted(summary["groups_added"]) == ["TB1C", "TB1E", "TB1F", "XJ19"]
    table = migration_table(d)
    assert table["cases"] == len(cases)
    expected: dict[tuple[str, str], int] = {}
    for c in cases:
        before = national.group(c).drg
        if before == "TB19":
            key = (before, "TB1C" if c["age"] < 18 else "TB1E" if c["age"] >= 65 else "TB1F")
        elif before in ("XJ13", "XJ15"):
            key = (before, "XJ19")
        else:
            continue
        expected[key] = expected.get(key, 0) + 1
    assert {(m["from"], m["to"]): m["cases"] for m in table["moves"]} == expected
    assert table["moved"] == sum(expected.values())
    counts = [m["cases"] for m in table["moves"]]
    assert counts == sorted(counts, reverse=True)


def test_no_cases_no_moves(national) -> None:
    local = compile_local_scheme(national, apply_change_set(national, read_scheme_docs(national),
                                                            parse_change_set(_raw(RENAME))))
    assert migration_table(diff_schemes(national, local, [])) == {"cases": 0, "moved": 0, "moves": []}
