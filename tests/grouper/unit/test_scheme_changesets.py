"""Local schemes as change sets (docs/scheme-changesets.md): a built scheme groups the base
scheme's oracle cases identically except the cases of the groups an operation changed, which
move as it says; the national ADRG core is refused unless provincial; bad change sets name
the operation and the field."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from grouper_testkit import case, oracle_cases, scheme_path, write_scheme

from services.grouper.domain import (
    ChangeSetError,
    Scheme,
    apply_change_set,
    diff_schemes,
    engine_input,
    load_scheme,
    parse_change_set,
    read_scheme_docs,
    write_scheme_folder,
)
from shared.events import CaseReceived


def change_set(*operations: dict[str, Any], base: str = "mini", **meta: Any) -> dict[str, Any]:
    return {"id": "local-1", "name": "本地分组", "base": base, "region": "350500",
            "author": "医保局", "operations": list(operations), **meta}


def build(base: Scheme, doc: dict[str, Any], out: Path) -> Scheme:
    raw = json.dumps(doc, ensure_ascii=False).encode()
    docs = apply_change_set(base, read_scheme_docs(base), parse_change_set(raw))
    write_scheme_folder(base, docs, out, raw)
    return load_scheme(out)


def problems(base: Scheme, doc: dict[str, Any] | bytes) -> list[dict[str, Any]]:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
    with pytest.raises(ChangeSetError) as exc:
        apply_change_set(base, read_scheme_docs(base), parse_change_set(raw))
    assert exc.value.code == "INVALID_CHANGESET" and exc.value.status == 422
    return exc.value.details


@pytest.fixture
def mini(tmp_path) -> Scheme:
    return load_scheme(write_scheme(tmp_path / "base"))


@pytest.fixture(scope="module")
def national() -> Scheme:
    return load_scheme(scheme_path("chs-drg-1.1"))


@pytest.fixture(scope="module")
def national_cases() -> list[dict[str, Any]]:
    return oracle_cases("chs-drg-1.1")


# --------------------------------------------------------------------------- the oracle


def _age_part(c: dict[str, Any]) -> str:
    return "TB1C" if c["age"] < 18 else "TB1E" if c["age"] >= 65 else "TB1F"


ORACLE_CHANGES = {
    # the acceptance case: a national DRG split by age
    "split by age": (
        {"op": "split_drg", "drg": "TB19", "by": "age", "into": [
            {"code": "TB1C", "name": "精神病患者的手术，年龄<18岁", "max": 18},
            {"code": "TB1E", "name": "精神病患者的手术，年龄≥65岁", "min": 65},
            {"code": "TB1F", "name": "精神病患者的手术，年龄18-64岁"}]},
        {"TB19": _age_part},
    ),
    "merge": (
        {"op": "merge_drgs", "drgs": ["XJ13", "XJ15"],
         "into": {"code": "XJ19", "name": "其他接触健康服务的诊断伴手术室操作"}},
        {"XJ13": lambda c: "XJ19", "XJ15": lambda c: "XJ19"},
    ),
    "rename with a new code": (
        {"op": "rename", "group": "IZ29", "code": "IZ2A", "name": "骨骼肌肉其他疾患（本地）"},
        {"IZ29": lambda c: "IZ2A"},
    ),
    "split by length of stay": (
        {"op": "split_drg", "drg": "IZ29", "by": "los", "into": [
            {"code": "IZ2L", "name": "长期住院", "min": 15}, {"code": "IZ2S", "name": "其余"}]},
        {"IZ29": lambda c: "IZ2L" if c["los"] >= 15 else "IZ2S"},
    ),
}


@pytest.mark.parametrize("change", list(ORACLE_CHANGES))
def test_built_scheme_groups_the_oracle_cases_as_the_base_except_the_changed_groups(
        tmp_path, national, national_cases, change):
    op, moves = ORACLE_CHANGES[change]
    local = build(national, change_set(op, base="chs-drg-1.1"), tmp_path / "local")
    moved: dict[str, set[str]] = {}
    for c in national_cases:
        for mode in ("raw", "mapped"):
            before, after = national.group(c, code_mode=mode), local.group(c, code_mode=mode)
            if before.drg in moves:
                expected = moves[before.drg](c)
                assert (after.mdc, after.adrg, after.drg, after.status) == (
                    before.mdc, before.adrg, expected, before.status), c["id"]
                assert after.drg_name == local.drgs[expected].name
                moved.setdefault(before.drg, set()).add(after.drg)
            else:
                assert after == before, (c["id"], mode)
    # the oracle reaches every national DRG, so every changed group had cases to move
    assert set(moved) == set(moves)
    if change == "split by age":
        assert moved["TB19"] == {"TB1C", "TB1E", "TB1F"}


def test_the_built_folder_records_its_base_and_change_set(tmp_path, national):
    doc = change_set(ORACLE_CHANGES["split by age"][0], base="chs-drg-1.1", provincial=False)
    local = build(national, doc, tmp_path / "local")
    raw = (tmp_path / "local" / "changeset.json").read_bytes()
    assert json.loads(raw) == doc
    derived = local.manifest["derived_from"]
    assert derived["scheme"] == "chs-drg-1.1"
    assert derived["changeset"]["id"] == "local-1"
    assert derived["changeset"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert local.id == "local-1" and local.title == "本地分组"
    assert local.manifest["counts"]["drgs"] == 630 == len(local.drgs)
    assert local.adrgs["TB1"].drgs == ("TB1C", "TB1E", "TB1F")
    assert [json.loads((tmp_path / "local" / "drg.json").read_text())["drgs"][i]["order"]
            for i in range(3)] == [1, 1, 1]
    assert (tmp_path / "local" / "LICENSE-Apache-2.0.txt").is_file()
    # the code tables are the base's, unchanged
    for name in ("cc.tsv", "diagnoses.tsv", "procedure_map.tsv"):
        assert (tmp_path / "local" / name).read_bytes() == (scheme_path("chs-drg-1.1") / name).read_bytes()


def test_diff_shows_split_merge_recode_and_rename(tmp_path, national, national_cases):
    doc = change_set(
        ORACLE_CHANGES["split by age"][0], ORACLE_CHANGES["merge"][0],
        {"op": "rename", "group": "OZ19", "code": "OZ1A", "name": "与妊娠有关的其他疾患"},
        {"op": "rename", "group": "ES3", "name": "呼吸系统感染或炎症"},
        base="chs-drg-1.1")
    local = build(national, doc, tmp_path / "local")
    d = diff_schemes(national, local, national_cases)
    kinds = {(g.kind, g.adrg, g.before, g.after) for g in d.group_changes}
    assert kinds == {("split", "TB1", ("TB19",), ("TB1C", "TB1E", "TB1F")),
                     ("merge", "XJ1", ("XJ13", "XJ15"), ("XJ19",)),
                     ("recode", "OZ1", ("OZ19",), ("OZ1A",))}
    assert [(r.kind, r.code, r.after) for r in d.renames] == [("adrg", "ES3", "呼吸系统感染或炎症")]
    assert not d.rule_changes and not d.adrgs_added and not d.adrgs_removed
    assert {a for a, _b in d.moves} == {"TB19", "XJ13", "XJ15", "OZ19"}
    assert d.moved_cases == sum(
        1 for c in national_cases if national.group(c).drg in {"TB19", "XJ13", "XJ15", "OZ19"})
    assert d.to_dict()["group_changes"][0]["kind"] in {"split", "merge", "recode"}


# --------------------------------------------------------------------------- the operations


def test_split_by_procedures_diagnoses_and_birth_weight(tmp_path, mini):
    doc = change_set(
        {"op": "split_drg", "drg": "A115", "by": "procedures",
         "into": [{"code": "A11P", "name": "手术二", "codes": ["P2"], "match": "any"},
                  {"code": "A11Q", "name": "其余"}]},
        {"op": "split_drg", "drg": "A219", "by": "diagnoses",
         "into": [{"code": "A21S", "name": "伴诊断三", "codes": ["D3"], "match": "secondary"},
                  {"code": "A21R", "name": "其余"}]},
        {"op": "split_drg", "drg": "B119", "by": "birth_weight",
         "into": [{"code": "B11L", "name": "低体重", "min": 1, "max": 2500},
                  {"code": "B11N", "name": "其余"}]},
    )
    local = build(mini, doc, tmp_path / "local")
    assert local.group(case(diagnoses=["D1"], procedures=["P1", "P2"])).drg == "A11P"
    assert local.group(case(diagnoses=["D1"], procedures=["P1"])).drg == "A11Q"
    # MCC cases of the same ADRG are untouched
    assert local.group(case(diagnoses=["D1", "M2"], procedures=["P1", "P2"])).drg == "A111"
    assert local.group(case(diagnoses=["D2", "D3"])).drg == "A21S"
    assert local.group(case(diagnoses=["D3", "D2"])).drg == "B11N"  # D3 principal: not secondary
    assert local.group(case(diagnoses=["D2"])).drg == "A21R"
    assert local.group(case(diagnoses=["D3"], birth_weight=1800)).drg == "B11L"
    assert local.group(case(diagnoses=["D3"], birth_weight=None)).drg == "B11N"
    assert local.lists["LOCAL.A11P.px"] == frozenset({"P2"})


def test_split_by_los_puts_cases_without_a_length_of_stay_in_the_last_part(tmp_path, mini):
    doc = change_set({"op": "split_drg", "drg": "B119", "by": "los",
                      "into": [{"code": "B11L", "name": "长", "min": 30},
                               {"code": "B11S", "name": "短"}]})
    local = build(mini, doc, tmp_path / "local")
    assert local.group(case(diagnoses=["D3"], los=30)).drg == "B11L"
    assert local.group(case(diagnoses=["D3"], los=29)).drg == "B11S"
    assert local.group(case(diagnoses=["D3"])).drg == "B11S"
    assert local.group(case(diagnoses=["D3"], los="30")).drg == "B11S"  # not a number: unknown
    traced = local.group(case(diagnoses=["D3"], los=31), trace=True)
    assert traced.drg == "B11L" and "los=31" in "\n".join(traced.trace.render())


def test_the_live_stage_passes_the_length_of_stay_to_the_engine(tmp_path, mini):
    local = build(mini, change_set({"op": "split_drg", "drg": "B119", "by": "los",
                                    "into": [{"code": "B11L", "name": "长", "min": 30},
                                             {"code": "B11S", "name": "短"}]}), tmp_path / "l")
    received = CaseReceived.model_validate({
        "facts": {"hospital_code": "H", "setl_id": "S", "psn_key": "P"}, "sex": 1, "age": 40,
        "los": 45, "diagnoses": ["D3"]})
    assert local.group(engine_input(received)).drg == "B11L"


def test_merge_needs_adjacent_drgs_of_one_adrg(tmp_path, mini):
    local = build(mini, change_set({"op": "merge_drgs", "drgs": ["A113", "A111"],
                                    "into": {"code": "A11M", "name": "伴并发症"}}), tmp_path / "l")
    assert local.adrgs["A11"].drgs == ("A11M", "A115")
    assert local.group(case(diagnoses=["D1", "M2"], procedures=["P1"])).drg == "A11M"
    assert local.group(case(diagnoses=["D2", "C1"], procedures=["P1"])).drg == "A11M"
    assert local.group(case(diagnoses=["D1", "C1"], procedures=["P1"])).drg == "A115"  # excluded

    gap = problems(mini, change_set({"op": "merge_drgs", "drgs": ["A111", "A115"],
                                     "into": {"code": "A11M", "name": "x"}}))
    assert gap[0]["field"] == "operations[0].drgs" and "A113 lies between" in gap[0]["message"]
    across = problems(mini, change_set({"op": "merge_drgs", "drgs": ["A219", "B119"],
                                        "into": {"code": "AB19", "name": "x"}}))
    assert across[0]["field"] == "operations[0].drgs"
    assert "different ADRGs" in across[0]["message"] and "merge_drgs A219+B119" in across[0]["message"]


def test_rename_changes_names_and_drg_codes_but_never_an_adrg_code(tmp_path, mini):
    doc = change_set({"op": "rename", "group": "A219", "name": "甲内科（本地）"},
                     {"op": "rename", "group": "A21", "name": "甲内科组"},
                     {"op": "rename", "group": "B119", "code": "B11A", "name": "乙（本地）"},
                     {"op": "rename", "group": "B11A", "name": "乙（再改）"})
    local = build(mini, doc, tmp_path / "local")
    assert local.group(case(diagnoses=["D2"])).drg_name == "甲内科（本地）"
    assert local.adrgs["A21"].name == "甲内科组"
    r = local.group(case(diagnoses=["D3"]))
    assert (r.drg, r.drg_name) == ("B11A", "乙（再改）")
    bad = problems(mini, change_set({"op": "rename", "group": "A21", "code": "A2X", "name": "x"}))
    assert bad[0]["field"] == "operations[0].code" and "national code" in bad[0]["message"]
    gone = problems(mini, change_set({"op": "rename", "group": "B119", "code": "B11A", "name": "x"},
                                     {"op": "rename", "group": "B119", "name": "y"}))
    assert gone[0]["field"] == "operations[1].group"
    assert "operations[0] (rename) replaced it" in gone[0]["message"]


def test_edit_list_of_a_local_list(tmp_path, mini):
    doc = change_set(
        {"op": "split_drg", "drg": "A115", "by": "procedures",
         "into": [{"code": "A11P", "name": "手术一", "codes": ["P1"], "match": "main"},
                  {"code": "A11Q", "name": "其余"}]},
        {"op": "edit_list", "list": "LOCAL.A11P.px", "add": ["P2"], "remove": ["P1"]})
    local = build(mini, doc, tmp_path / "local")
    assert local.lists["LOCAL.A11P.px"] == frozenset({"P2"})
    assert local.group(case(diagnoses=["D1"], procedures=["P1"])).drg == "A11Q"


# --------------------------------------------------------------------------- the national core


@pytest.mark.parametrize(("lid", "reader"), [("A11.px", "ADRG A11"), ("MA.dx", "MDC MDCA"),
                                             ("OR", "MDC MDCA")])
def test_a_change_of_an_entry_rule_is_refused_unless_provincial(tmp_path, mini, lid, reader):
    op = {"op": "edit_list", "list": lid, "add": ["P2" if lid != "MA.dx" else "D3"]}
    if lid == "OR":
        op = {"op": "edit_list", "list": lid, "remove": ["P2"]}
    refused = problems(mini, change_set({"op": "rename", "group": "A21", "name": "x"}, op))
    assert len(refused) == 1
    assert refused[0]["field"] == "operations[1].list"
    msg = refused[0]["message"]
    assert f"(edit_list {lid})" in msg and reader in msg and "provincial" in msg

    local = build(mini, change_set(op, provincial=True), tmp_path / "local")
    assert local.manifest["derived_from"]["changeset"]["provincial"] is True
    if lid == "A11.px":
        assert local.group(case(diagnoses=["D1"], procedures=["P2"])).adrg == "A11"
        assert mini.group(case(diagnoses=["D1"], procedures=["P2"])).adrg != "A11"


# --------------------------------------------------------------------------- bad change sets

SPLIT = {"op": "split_drg", "drg": "B119", "by": "age",
         "into": [{"code": "B11E", "name": "老年", "min": 65}, {"code": "B11F", "name": "其余"}]}


def _with(path: str, value: Any) -> dict[str, Any]:
    """The SPLIT change set with one field replaced (path like 'operations.0.into.1.min')."""
    doc = change_set(copy.deepcopy(SPLIT))
    node: Any = doc
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    if value is _DROP:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


_DROP = object()

BAD = [
    ("id", _DROP, "id", "required"),
    ("provincial", "yes", "provincial", "true or false"),
    ("base", "chs-drg-1.1", "base", "written over 'chs-drg-1.1'"),
    ("operations", [], "operations", "non-empty"),
    ("operations.0.op", "split", "operations[0].op", "unknown operation 'split'"),
    ("operations.0.intoo", [], "operations[0].intoo", "unknown field for split_drg"),
    ("operations.0.drg", "B118", "operations[0].drg", "DRG B118 is not in mini"),
    ("operations.0.drg", "B11", "operations[0].drg", "B11 is an ADRG"),
    ("operations.0.by", "height", "operations[0].by", "must be one of age, los"),
    ("operations.0.into.0.code", "A111", "operations[0].into[0].code", "'A111' already exists (DRG in mini)"),
    ("operations.0.into.1.code", "B11E", "operations[0].into[1].code", "'B11E' already exists (operations[0])"),
    ("operations.0.into.1.code", "MDCA", "operations[0].into[1].code", "(MDC in mini)"),
    ("operations.0.into.0.name", "", "operations[0].into[0].name", "non-empty name"),
    ("operations.0.into.0.min", -1, "operations[0].into[0].min", "whole number"),
    ("operations.0.into.0.max", 60, "operations[0].into[0].max", "greater than min (65)"),
    ("operations.0.into.0.min", _DROP, "operations[0].into[0]", "needs a condition"),
    ("operations.0.into.1.min", 1, "operations[0].into[1]", "last part takes the remaining cases"),
    ("operations.0.into.0.codes", ["D1"], "operations[0].into[0].codes", "unknown field for a split by age"),
    ("operations.0.into", [{"code": "B11E", "name": "x"}], "operations[0].into", "at least two parts"),
]


@pytest.mark.parametrize(("path", "value", "field", "fragment"), BAD,
                         ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_change_sets_name_the_operation_and_field(mini, path, value, field, fragment):
    found = problems(mini, _with(path, value))
    assert any(p["field"] == field and fragment in p["message"] for p in found), found
    if field.startswith("operations[0].") and field != "operations[0].op":
        hit = next(p for p in found if p["field"] == field)
        assert hit["message"].startswith(f"{field} (split_drg")


@pytest.mark.parametrize(("op", "field", "fragment"), [
    ({"op": "split_drg", "drg": "B119", "by": "age", "into": [
        {"code": "B11A", "name": "a", "min": 60}, {"code": "B11B", "name": "b", "min": 65, "max": 80},
        {"code": "B11C", "name": "c"}]}, "operations[0].into[1]", "overlaps into[0]"),
    ({"op": "split_drg", "drg": "B119", "by": "procedures", "into": [
        {"code": "B11A", "name": "a", "codes": ["P1", "P9"]}, {"code": "B11C", "name": "c"}]},
     "operations[0].into[0].codes[1]", "'P9' is not in the scheme's procedure dictionary"),
    ({"op": "split_drg", "drg": "B119", "by": "diagnoses", "into": [
        {"code": "B11A", "name": "a", "list": "NOPE"}, {"code": "B11C", "name": "c"}]},
     "operations[0].into[0].list", "'NOPE' is not in mini's lists.json"),
    ({"op": "split_drg", "drg": "B119", "by": "diagnoses", "into": [
        {"code": "B11A", "name": "a", "codes": ["D1"], "match": "main"}, {"code": "B11C", "name": "c"}]},
     "operations[0].into[0].match", "principal"),
    ({"op": "edit_list", "list": "NOPE", "add": ["D1"]}, "operations[0].list", "not in mini's lists.json"),
    ({"op": "edit_list", "list": "A21.dx"}, "operations[0].add", "to add, to remove"),
    ({"op": "merge_drgs", "drgs": ["A111"], "into": {"code": "A11M", "name": "x"}},
     "operations[0].drgs", "at least two"),
    ({"op": "merge_drgs", "drgs": ["A111", "A113"], "into": {"code": "A 11", "name": "x"}},
     "operations[0].into.code", "group code"),
])
def test_more_bad_operations(mini, op, field, fragment):
    found = problems(mini, change_set(op))
    assert any(p["field"] == field and fragment in p["message"] for p in found), found


def test_every_problem_is_reported_at_once(mini):
    doc = change_set({"op": "rename", "group": "Z999", "name": "x"},
                     {"op": "edit_list", "list": "A21.dx", "remove": ["D9"]},
                     {"op": "merge_drgs", "drgs": ["A111", "A113"], "into": {"code": "B119", "name": "x"}},
                     provincial=True)
    found = problems(mini, doc)
    assert [p["field"] for p in found] == ["operations[0].group", "operations[1].remove[0]",
                                           "operations[2].into.code"]


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"{not json", "malformed JSON at line 1"),
    (b"[1]", "a JSON object"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_a_file_that_is_not_a_change_set(mini, raw, fragment):
    with pytest.raises(ChangeSetError) as exc:
        parse_change_set(raw)
    assert exc.value.field == "(file)" and fragment in exc.value.message
