"""load_scheme: a minimal valid scheme loads; broken ones raise SchemeError naming the file
and the entry; the real schemes load fast."""

from __future__ import annotations

import json
import time

import pytest
from grouper_testkit import SCHEME_IDS, minimal_scheme_data, scheme_path, write_scheme

from services.grouper.domain import SchemeError, load_scheme


def test_minimal_scheme_loads(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path / "s"))
    assert scheme.id == "mini"
    assert [m.code for m in scheme.mdcs] == ["MDCA", "MDCB"]
    assert scheme.counts()["drgs"] == 5
    assert scheme.lists["MA.dx"] == frozenset({"D1", "D2"})


def _load_broken(tmp_path, mutate) -> str:
    data = minimal_scheme_data()
    mutate(data)
    root = write_scheme(tmp_path / "s", data)
    with pytest.raises(SchemeError) as exc:
        load_scheme(root)
    return str(exc.value)


def test_unknown_list_id_names_file_and_entry(tmp_path):
    def mutate(d):
        d["adrg"]["adrgs"][0]["rule"] = {"all": [{"pdx_in": "MA.dx"}, {"any_px_in": "A11.pxx"}]}

    msg = _load_broken(tmp_path, mutate)
    assert msg.startswith("adrg.json: ADRG A11 rule: unknown list id 'A11.pxx'")
    assert "all[1]" in msg


def test_unknown_condition(tmp_path):
    msg = _load_broken(tmp_path, lambda d: d["drg"]["drgs"][0].update(rule={"has_mmc": True}))
    assert msg == "drg.json: DRG A111 rule: unknown condition 'has_mmc'"


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"pdx_in": "MA.dx", "sex_eq": 1}, "exactly one key"),
        ({"sex_eq": "1"}, "needs an integer"),
        ({"sex_eq": True}, "needs an integer"),
        ({"pdx_in": ["D1"]}, "needs a list id string"),
        ({"has_mcc": 1}, "takes only the value true"),
        ({"all": {"pdx_in": "MA.dx"}}, "needs a list of rules"),
        ({"any_dx_prefix": ""}, "non-empty string"),
        ({"dx_regions_ge": {"min": 2}}, "'dx_regions_ge' needs"),
        ({"dx_regions_ge": {"min": 0, "regions": ["MA.dx"]}}, "positive integer"),
        (False, "a rule must be true or an object"),
        ([], "a rule must be true or an object"),
    ],
)
def test_wrong_arity_or_types(tmp_path, rule, needle):
    msg = _load_broken(tmp_path, lambda d: d["adrg"]["adrgs"][1].update(rule=rule))
    assert msg.startswith("adrg.json: ADRG A21 rule: ")
    assert needle in msg


def test_mdc_references_undefined_adrg(tmp_path):
    msg = _load_broken(tmp_path, lambda d: d["mdc"]["mdcs"][1]["adrgs"].append("B21"))
    assert msg == "mdc.json: MDC MDCB: ADRG B21 is referenced but not defined in adrg.json"


def test_adrg_references_undefined_drg(tmp_path):
    msg = _load_broken(tmp_path, lambda d: d["adrg"]["adrgs"][1]["drgs"].append("A215"))
    assert msg == "adrg.json: ADRG A21: DRG A215 is referenced but not defined in drg.json"


def test_mdc_entry_rule_error(tmp_path):
    msg = _load_broken(tmp_path, lambda d: d["mdc"]["mdcs"][0].update(entry={"pdx_in": "nope"}))
    assert msg == "mdc.json: MDC MDCA entry: unknown list id 'nope'"


def test_unknown_validation_check(tmp_path):
    def mutate(d):
        d["mdc"]["evaluation"] = {"validation": ["sex_present", "age_positive"]}

    msg = _load_broken(tmp_path, mutate)
    assert msg.startswith("mdc.json: evaluation: unknown validation check 'age_positive'")


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ({"missing_numbers": "one"}, "missing_numbers"),
        ({"mapped_empty_codes": "skip"}, "mapped_empty_codes"),
        ({"strict": True}, "unknown option"),
    ],
)
def test_bad_evaluation_options(tmp_path, block, needle):
    msg = _load_broken(tmp_path, lambda d: d["mdc"].update(evaluation=block))
    assert msg.startswith("mdc.json: evaluation: ") and needle in msg


def test_missing_file(tmp_path):
    root = write_scheme(tmp_path / "s")
    (root / "cc.tsv").unlink()
    with pytest.raises(SchemeError, match=r"^cc.tsv: file not found"):
        load_scheme(root)


def test_missing_manifest(tmp_path):
    with pytest.raises(SchemeError, match=r"^scheme.json: file not found"):
        load_scheme(tmp_path)


def test_manifest_without_file_entry(tmp_path):
    data = minimal_scheme_data()
    del data["manifest"]["files"]["mcc"]
    root = write_scheme(tmp_path / "s", data)
    with pytest.raises(SchemeError, match=r"^scheme.json: files.mcc is missing"):
        load_scheme(root)


def test_malformed_json(tmp_path):
    root = write_scheme(tmp_path / "s")
    (root / "lists.json").write_text('{"MA.dx": ["D1",]}', "utf-8")
    with pytest.raises(SchemeError, match=r"^lists.json: malformed JSON at line 1"):
        load_scheme(root)


def test_list_not_array_of_strings(tmp_path):
    data = minimal_scheme_data()
    data["lists"]["OR"] = ["P1", 2]
    root = write_scheme(tmp_path / "s", data)
    with pytest.raises(SchemeError, match=r"^lists.json: list 'OR'"):
        load_scheme(root)


def test_malformed_tsv_row(tmp_path):
    root = write_scheme(tmp_path / "s")
    with (root / "mcc.tsv").open("a", encoding="utf-8") as fh:
        fh.write("M3\tt3\textra\n")
    with pytest.raises(SchemeError, match=r"^mcc.tsv: line 4: expected 2 tab-separated cells, got 3"):
        load_scheme(root)


def test_tsv_wrong_header(tmp_path):
    root = write_scheme(tmp_path / "s")
    (root / "cc_exclusion.tsv").write_text("code\ttable\nD1\tt1\n", "utf-8")
    with pytest.raises(SchemeError, match=r"^cc_exclusion.tsv: line 1: header"):
        load_scheme(root)


def test_tsv_cells_are_verbatim(tmp_path):
    data = minimal_scheme_data()
    data["diagnosis_map"].append(("D9", " D2"))  # leading space kept, as in the real maps
    root = write_scheme(tmp_path / "s", data)
    # CRLF line endings: only the terminator is removed.
    p = root / "procedure_map.tsv"
    p.write_text(p.read_text("utf-8").replace("\n", "\r\n"), "utf-8")
    scheme = load_scheme(root)
    assert scheme.diagnosis_map["D9"] == " D2"
    assert scheme.procedure_map["Q1"] == "P1"


def test_duplicate_adrg(tmp_path):
    msg = _load_broken(
        tmp_path, lambda d: d["adrg"]["adrgs"].append(dict(d["adrg"]["adrgs"][1]))
    )
    assert msg == "adrg.json: ADRG A21: defined twice"


def test_ambiguous_position_out_of_range(tmp_path):
    msg = _load_broken(tmp_path, lambda d: d["mdc"]["mdcs"][0]["ambiguous"].update(position=3))
    assert msg.startswith("mdc.json: MDC MDCA ambiguous: position 3 outside 0..2")


def test_json_file_of_wrong_shape(tmp_path):
    root = write_scheme(tmp_path / "s")
    (root / "drg.json").write_text(json.dumps([1, 2]), "utf-8")
    with pytest.raises(SchemeError, match=r"^drg.json: must be an object with a 'drgs' array"):
        load_scheme(root)


@pytest.mark.parametrize("scheme_id", SCHEME_IDS)
def test_real_schemes_load_fast_with_documented_counts(scheme_id):
    started = time.perf_counter()
    scheme = load_scheme(scheme_path(scheme_id))
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    counts = scheme.counts()
    for key, n in scheme.manifest["counts"].items():
        assert counts[key] == n, key
