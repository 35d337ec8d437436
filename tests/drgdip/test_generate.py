"""The synthetic region generator: determinism, national list structure, grouping with the
national 1.1 scheme and the sample scheme, seeded patterns."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from paths import REPO, SHARED
from typer.testing import CliRunner

from drgdip.generate import (
    FEE_CATEGORIES,
    PATTERNS,
    RegionGenerator,
    generate_region,
    generate_stats,
    grouping_case,
)
from services.grouper.domain import load_scheme

NATIONAL = SHARED / "schemes" / "chs-drg-1.1"
SAMPLE = REPO / "drgdip" / "sample_scheme"
EXAMPLE_4101 = SHARED / "testdata" / "hsa" / "4101-01.json"

needs_national = pytest.mark.skipif(not (NATIONAL / "scheme.json").exists(),
                                    reason=f"national scheme not found at {NATIONAL}")

# setlinfo fields every list must carry with a non-empty value (bad records excepted).
REQUIRED = ("mdtrt_id", "setl_id", "psn_no", "medcasno", "fixmedins_code", "fixmedins_name",
            "psn_name", "gend", "brdy", "age", "certno", "hi_type", "insuplc", "adm_time",
            "dscg_time", "act_ipt_days", "wm_dise_code", "dscg_way", "days_rinp_flag_31",
            "setl_begn_date", "setl_end_date", "psn_selfpay", "psn_ownpay", "acct_pay",
            "psn_cashpay", "medfee_sumamt")
NODES = ("setlinfo", "payinfo", "opspdiseinfo", "diseinfo", "iteminfo", "oprninfo", "icuinfo")


def _lists(scheme: Path, n: int, seed: int = 11, hospitals: int = 12) -> list[dict[str, Any]]:
    return list(generate_region(scheme, hospitals=hospitals, cases=n, seed=seed))


def _fen(s: str) -> int:
    return int(Decimal(s) * 100)


@pytest.fixture(scope="module")
def national_lists() -> list[dict[str, Any]]:
    if not (NATIONAL / "scheme.json").exists():
        pytest.skip(f"national scheme not found at {NATIONAL}")
    return _lists(NATIONAL, 5000)


def test_same_seed_same_output_different_seed_different() -> None:
    a = [orjson.dumps(x) for x in _lists(SAMPLE, 400, seed=5)]
    b = [orjson.dumps(x) for x in _lists(SAMPLE, 400, seed=5)]
    c = [orjson.dumps(x) for x in _lists(SAMPLE, 400, seed=6)]
    assert a == b
    assert a != c
    assert len(a) == 400


def test_exact_count_and_date_order() -> None:
    for n in (0, 1, 7, 1000):
        lists = _lists(SAMPLE, n, hospitals=3)
        assert len(lists) == n
        ends = [x["setlinfo"]["setl_end_date"] for x in lists
                if "_synthetic" not in x["setlinfo"]]
        assert ends == sorted(ends)
    years = Counter(x["setlinfo"]["setl_end_date"][:4] for x in _lists(SAMPLE, 900))
    assert set(years) == {"2022", "2023", "2024"}


def test_every_list_has_the_national_structure(national_lists: list[dict[str, Any]]) -> None:
    example_setl = set(orjson.loads(EXAMPLE_4101.read_bytes())["input"]["setlinfo"]) \
        if EXAMPLE_4101.exists() else set(REQUIRED)
    for lst in national_lists:
        s = lst["setlinfo"]
        assert set(lst) == set(NODES)
        assert example_setl <= set(s), example_setl - set(s)
        assert all(isinstance(v, str) for k, v in s.items() if k != "_synthetic")
        if s.get("_synthetic", {}).get("pattern") == "bad_record":
            continue
        for key in REQUIRED:
            assert s[key] != "", (key, s["setl_id"])
        main = [d for d in lst["diseinfo"] if d["maindiag_flag"] == "1"]
        assert len(main) == 1 and lst["diseinfo"][0] is main[0]
        assert main[0]["diag_code"] == s["wm_dise_code"]
        assert [i["med_chrgitm"] for i in lst["iteminfo"]] == list(FEE_CATEGORIES)
        total = _fen(s["medfee_sumamt"])
        assert sum(_fen(i["amt"]) for i in lst["iteminfo"]) == total
        for i in lst["iteminfo"]:
            parts = i["claa_sumfee"], i["clab_amt"], i["fulamt_ownpay_amt"], i["oth_amt"]
            assert sum(_fen(p) for p in parts) == _fen(i["amt"])
        fund = sum(_fen(p["fund_payamt"]) for p in lst["payinfo"])
        assert fund + _fen(s["psn_selfpay"]) + _fen(s["psn_ownpay"]) == total
        assert _fen(s["acct_pay"]) + _fen(s["psn_cashpay"]) == _fen(s["psn_selfpay"]) + _fen(s["psn_ownpay"])
        adm = datetime.fromisoformat(s["adm_time"])
        dscg = datetime.fromisoformat(s["dscg_time"])
        assert adm <= dscg
        assert int(s["act_ipt_days"]) == (dscg.date() - adm.date()).days
        assert s["gend"] in ("1", "2") and s["hi_type"] in ("310", "390")
        assert len(s["certno"]) == 18 and s["psn_name"].startswith("患者")
        if s["age"] == "0":
            assert s["nwb_age"] != "" and s["nwb_bir_wt"] != ""


def test_national_grouping_share_mdcs_and_complications(national_lists: list[dict[str, Any]]) -> None:
    scheme = load_scheme(NATIONAL)
    st = generate_stats(national_lists, scheme).to_dict()
    assert st["grouped_share"] >= 0.95
    assert st["mdcs_reached"] >= 20
    assert 0.15 <= st["mcc_share"] <= 0.25
    assert 0.20 <= st["cc_share"] <= 0.30
    # Sex and age fit the MDC.
    group = scheme.grouper()
    for lst in national_lists:
        s = lst["setlinfo"]
        if "_synthetic" in s:
            continue
        r = group(grouping_case(lst))
        if r.mdc in ("MDCO", "MDCN"):
            assert s["gend"] == "2"
        elif r.mdc == "MDCM":
            assert s["gend"] == "1"
        elif r.mdc == "MDCP":
            assert s["age"] == "0"


def test_seeded_patterns(national_lists: list[dict[str, Any]]) -> None:
    by_id = {x["setlinfo"]["setl_id"]: x["setlinfo"] for x in national_lists}
    found: Counter[str] = Counter()
    for s in by_id.values():
        syn = s.get("_synthetic")
        if not syn:
            continue
        assert syn["pattern"] in PATTERNS
        found[syn["pattern"]] += 1
        if syn["pattern"] == "readmission_15d":
            other = by_id[syn["related_setl_id"]]
            assert other["_synthetic"]["related_setl_id"] == s["setl_id"]
            assert other["psn_no"] == s["psn_no"] and other["certno"] == s["certno"]
            assert other["fixmedins_code"] == s["fixmedins_code"]
            first, second = sorted((s, other), key=lambda x: x["adm_time"])
            gap = (datetime.fromisoformat(second["adm_time"]).date()
                   - datetime.fromisoformat(first["dscg_time"]).date()).days
            assert 0 < gap < 15
            assert first["days_rinp_flag_31"] == "1"
        elif syn["pattern"] == "short_low_cost":
            assert int(s["act_ipt_days"]) <= 2
        elif syn["pattern"] == "bad_record":
            assert syn["defect"]
    assert found["readmission_15d"] >= 20 and found["readmission_15d"] % 2 == 0
    assert found["suspicious_cc"] >= 10 and found["short_low_cost"] >= 20 and found["bad_record"] >= 5


@needs_national
def test_suspicious_cc_lifts_the_group() -> None:
    scheme = load_scheme(NATIONAL)
    group = scheme.grouper()
    seen = 0
    for lst in generate_region(NATIONAL, hospitals=5, cases=3000, seed=3):
        if lst["setlinfo"].get("_synthetic", {}).get("pattern") != "suspicious_cc":
            continue
        case = grouping_case(lst)
        without = {**case, "diagnoses": case["diagnoses"][:-1]}
        assert group(case).drg != group(without).drg
        seen += 1
    assert seen > 0


def test_sample_scheme_loads_and_groups_generated_cases() -> None:
    scheme = load_scheme(SAMPLE)
    assert scheme.manifest["not_for_payment"] is True
    assert 4 <= len(scheme.mdcs) <= 6 and 10 <= len(scheme.adrgs) <= 22
    assert sum(p.stat().st_size for p in SAMPLE.iterdir()) < 200_000
    gen = RegionGenerator(scheme, hospitals=6, cases=3000, seed=2)
    assert not gen.mix.unreachable
    lists = list(gen)
    st = generate_stats(lists, scheme).to_dict()
    assert st["grouped_share"] >= 0.99
    assert st["mdcs_reached"] == len(scheme.mdcs)
    assert gen.stats.to_dict()["lists"] == 3000
    reached = {scheme.group(grouping_case(x)).adrg for x in lists}
    assert set(scheme.adrgs) <= reached


def test_hospitals_have_three_levels() -> None:
    gen = RegionGenerator(SAMPLE, hospitals=20, cases=10, seed=1)
    levels = Counter(h.level for h in gen.hospitals)
    assert set(levels) == {1, 2, 3}
    assert len({h.code for h in gen.hospitals}) == 20
    assert all(h.code.startswith("H") for h in gen.hospitals)


def test_generation_is_streaming() -> None:
    it = generate_region(SAMPLE, hospitals=3, cases=10**7, seed=1)
    first = list(itertools.islice(it, 50))  # ten million would not fit if it were materialised
    assert len(first) == 50


def test_cli_writes_jsonl_and_summary(tmp_path: Path) -> None:
    import typer

    from drgdip.generate_cli import generate_command

    app = typer.Typer()
    app.command()(generate_command)
    out = tmp_path / "region.jsonl"
    result = CliRunner().invoke(app, ["--scheme", str(SAMPLE), "--output", str(out),
                                      "--hospitals", "4", "--cases", "300", "--seed", "9"])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) == 300
    assert orjson.loads(lines[0])["setlinfo"]["setl_id"]
    assert (tmp_path / "region.jsonl.hospitals.json").exists()
    assert "readmission_15d" in result.output


def test_the_output_passes_intake_qc_apart_from_the_deliberately_bad_records(
        national_lists: list[dict[str, Any]]) -> None:
    from services.ingest.domain import intake, qc

    dictionaries = qc.load_dictionaries(NATIONAL)
    rejected = [sl for sl in national_lists
                if isinstance(intake.evaluate("native", sl, caller_hospital=None, dictionaries=dictionaries),
                              intake.Rejected)]
    patterns = {(sl["setlinfo"].get("_synthetic") or {}).get("pattern") for sl in rejected}
    assert rejected and patterns == {"bad_record"}
