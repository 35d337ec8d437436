"""The bounds of a received list, the date window, the CSV reader and timeliness from the lists'
own dates (pure: no database)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from helpers import lists, simple_lists

from services.ingest.domain import csvformat, qc
from services.ingest.domain.intake import Accepted, Rejected, evaluate
from services.ingest.domain.limits import Limits, _walk, check_document
from services.ingest.domain.national import Problem
from services.ingest.domain.quality import score_quality, stored_records

TODAY = date(2025, 6, 30)


def national() -> dict[str, Any]:
    return copy.deepcopy(lists(1)[0])


def decide(doc: Any, fmt: str = "native", limits: Limits = Limits()) -> Accepted | Rejected:
    d = evaluate(fmt, doc, caller_hospital=None, dictionaries=None, limits=limits, today=TODAY)
    assert isinstance(d, Accepted | Rejected)
    # decided from its JSON text too (the quick pass over the bytes): the same decision
    assert evaluate(fmt, doc, caller_hospital=None, dictionaries=None, limits=limits, today=TODAY,
                    raw=orjson.dumps(doc)) == d
    return d


def found(d: Accepted | Rejected) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in (d.problems if isinstance(d, Rejected) else d.warnings)]


def test_a_good_list_passes_the_bounds() -> None:
    assert isinstance(decide(national()), Accepted)
    assert check_document("flat", simple_lists(1)[0]) == []


@pytest.mark.parametrize("value", ["A\x00B", "A\u202eB", "A\u2066B", "A\x9bB", "A\tB", "\ufeffAB"])
def test_control_characters_in_identifiers_name_the_field(value: str) -> None:
    doc = national()
    doc["diseinfo"][1]["diag_code"] = value
    assert found(decide(doc)) == [("diseinfo[1].diag_code", "NAT-CONTROL-CHAR")]


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, (*path, i))]
    return [path] if isinstance(doc, str) else []


@pytest.mark.parametrize("bad", ["\x00", "\u202e", "\x85", "x" * 501, "\t\n", "ok", "\x7f"])
def test_the_quick_pass_finds_a_problem_wherever_the_full_walk_does(bad: str) -> None:
    """A clean list skips the walk that names fields: every text of a list spoiled in turn is
    still found exactly as the full walk finds it (native and national forms)."""
    for doc, fmt in ((national(), "native"), (simple_lists(1)[0], "flat")):
        for path in _leaves(doc):
            spoiled = copy.deepcopy(doc)
            node = spoiled
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] += bad
            walked: list[Problem] = []
            _walk(spoiled, "", None, 0, Limits(), walked)
            assert check_document(fmt, spoiled) == walked, path
            for raw in (orjson.dumps(spoiled), json.dumps(spoiled).encode()):  # as sent; escaped
                assert check_document(fmt, spoiled, raw=raw) == walked, path


@pytest.mark.parametrize("limits", [Limits(), Limits(text_chars=20, id_chars=30), Limits(id_chars=5)])
def test_the_quick_pass_over_the_bytes_keeps_every_bound(limits: Limits) -> None:
    """Lengths at and over each bound, in every kind of place (identifiers, texts, native code
    arrays and fee keys), entries and nesting: the same problems with the bytes as without."""
    native = simple_lists(1)[0]
    for doc, fmt in ((national(), "native"), (native, "flat")):
        for path in _leaves(doc):
            for size in (limits.id_chars, limits.id_chars + 1, limits.text_chars, limits.text_chars + 1):
                spoiled = copy.deepcopy(doc)
                node = spoiled
                for step in path[:-1]:
                    node = node[step]
                node[path[-1]] = "名" * size
                raw = orjson.dumps(spoiled)
                assert check_document(fmt, spoiled, limits, raw) == check_document(fmt, spoiled, limits), path
    doc = dict(native, fees={"0" * (limits.id_chars + 1): "1.00"}, diagnoses=["A" * (limits.id_chars + 1)])
    assert check_document("flat", doc, limits, orjson.dumps(doc)) == check_document("flat", doc, limits) != []

def test_free_text_may_hold_line_breaks_but_no_nul() -> None:
    doc = national()
    doc["setlinfo"]["psn_name"] = "张\n三"
    assert isinstance(decide(doc), Accepted)
    doc["setlinfo"]["psn_name"] = "张\x00三"
    assert found(decide(doc)) == [("setlinfo.psn_name", "NAT-CONTROL-CHAR")]


def test_paths_are_named_in_the_form_the_list_came_in() -> None:
    flat = dict(simple_lists(1)[0], diagnoses=["I21.000", "I10\x00"], fees={"0\u202e1": "1.00"})
    assert [(p.field, p.code) for p in check_document("flat", flat)] == [
        ("diagnoses[1]", "NAT-CONTROL-CHAR"), (r'fees["0\u202e1"]', "NAT-CONTROL-CHAR")]
    message = {"infno": "4101", "msgid": "M\x00", "input": national()}
    message["input"]["setlinfo"]["setl_id"] = "S" * 65
    assert [(p.field, p.code) for p in check_document("4101", message)] == [
        ("msgid", "NAT-CONTROL-CHAR"), ("setlinfo.setl_id", "NAT-TOO-LONG")]
    withdrawal = {"input": {"data": {"stastinfo": [{"psn_no": "P", "setl_id": "S\x00", "stas_type": "0"}]}}}
    assert [(p.field, p.code) for p in check_document("4102", withdrawal)] == [
        ("input.data.stastinfo[0].setl_id", "NAT-CONTROL-CHAR")]


def test_lengths_and_counts_are_bounded_by_the_settings() -> None:
    limits = Limits(text_chars=20, id_chars=10, diagnoses=3, procedures=1, entries=2)
    doc = national()
    doc["setlinfo"]["psn_name"] = "名" * 21
    doc["setlinfo"]["medcasno"] = "M" * 11
    doc["oprninfo"] = [{"oprn_oprt_code": "00.0000"}] * 2
    doc["payinfo"] = [{"fund_pay_type": "310100"}] * 3
    assert found(decide(doc, limits=limits)) == [
        ("setlinfo.medcasno", "NAT-TOO-LONG"), ("setlinfo.psn_name", "NAT-TOO-LONG"),
        ("diseinfo", "NAT-TOO-MANY"), ("oprninfo", "NAT-TOO-MANY"), ("payinfo", "NAT-TOO-MANY")]


def test_a_maximal_list_is_refused_without_reading_its_entries() -> None:
    doc = national()
    doc["diseinfo"] = [{"diag_code": "\x00" * 60}] * 100_000  # the entries themselves are never walked
    assert found(decide(doc)) == [("diseinfo", "NAT-TOO-MANY")]
    nested: Any = {}
    deep = nested
    for _ in range(50):
        deep["x"] = {}
        deep = deep["x"]
    doc = national()
    doc["setlinfo"]["ext"] = nested
    assert [code for _f, code in found(decide(doc))] == ["NAT-TOO-DEEP"]


def test_dates_lie_in_the_window() -> None:
    doc = national()
    s = doc["setlinfo"]
    s["adm_time"], s["dscg_time"], s["act_ipt_days"] = "2030-01-01 09:00:00", "2030-01-05 09:00:00", "4"
    s["setl_begn_date"], s["setl_end_date"] = "2030-01-01", "2030-01-05"
    assert {f for f, c in found(decide(doc)) if c == "QC-DATE-005"} == {
        "setlinfo.adm_time", "setlinfo.dscg_time", "setlinfo.setl_begn_date", "setlinfo.setl_end_date"}
    s["adm_time"], s["dscg_time"] = "1999-12-01 09:00:00", "1999-12-05 09:00:00"
    s["setl_begn_date"], s["setl_end_date"], s["brdy"] = "1999-12-01", "1999-12-05", "1950-01-01"
    assert {f for f, c in found(decide(doc)) if c == "QC-DATE-006"} == {
        "setlinfo.adm_time", "setlinfo.dscg_time", "setlinfo.setl_begn_date", "setlinfo.setl_end_date"}
    assert [c for _f, c in found(decide(doc, limits=Limits(earliest_year=1990)))
            if c.startswith("QC-DATE")] == []
    tomorrow = national()
    tomorrow["setlinfo"]["dcla_time"] = "2025-07-01 08:00:00"  # within the 1-day tolerance
    assert isinstance(decide(tomorrow), Accepted)
    assert qc.RULES["QC-DATE-005"].title_zh and qc.RULES["QC-DATE-006"].title_en


def test_exactly_one_principal_diagnosis() -> None:
    doc = national()
    for d in doc["diseinfo"]:
        d["maindiag_flag"] = "1"
    assert {c for _f, c in found(decide(doc))} == {"QC-DX-001"}
    for d in doc["diseinfo"]:
        d["maindiag_flag"] = "0"
    assert found(decide(doc)) == [("diseinfo", "QC-DX-001")]


# --------------------------------------------------------------------------- CSV

HEADER = "hospital_code,setl_id,psn_no,psn_name,diagnoses\n"


def read(body: bytes, encoding: str | None = None, limit: int = 4096,
         chunk: int = 7) -> list[tuple[int, dict[str, Any] | Problem]]:
    reader = csvformat.CsvReader(encoding, limit)
    out = [item for start in range(0, len(body), chunk) for item in reader.feed(body[start:start + chunk])]
    return out + list(reader.close())


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_are_detected(encoding: str) -> None:
    body = (HEADER + "H1,S1,P1,张三,I21.000|I10.x00\nH1,S2,P2,李四,I10.x00\n").encode(encoding)
    assert read(body) == [
        (2, {"hospital_code": "H1", "setl_id": "S1", "psn_no": "P1", "psn_name": "张三",
             "diagnoses": ["I21.000", "I10.x00"]}),
        (3, {"hospital_code": "H1", "setl_id": "S2", "psn_no": "P2", "psn_name": "李四", "diagnoses": ["I10.x00"]})]


def test_an_ascii_start_then_gbk_is_read_as_gb18030() -> None:
    body = HEADER.encode() + b"H1,S1,P1,Zhang,I10\n" + "H1,S2,P2,李四,I10\n".encode("gbk")
    assert [doc["psn_name"] for _n, doc in read(body) if isinstance(doc, dict)] == ["Zhang", "李四"]


@pytest.mark.parametrize("body,declared", [((HEADER + "H1,S1,P1,x,I10\n").encode("utf-16"), None),
                                           ((HEADER + "H1,S1,P1,x,I10\n").encode("utf-16-le"), None),
                                           ("名字,编号\n".encode("gbk"), "utf-8"),
                                           (b"\xff\xff\xff,\x81\n", None)])
def test_utf16_or_an_unreadable_header_is_refused_naming_the_encoding(body: bytes, declared: str | None) -> None:
    with pytest.raises(csvformat.EncodingRefused) as e:
        read(body, csvformat.codec(declared))
    assert e.value.field == "encoding" and e.value.code == "CSV_ENCODING"
    with pytest.raises(csvformat.EncodingRefused):
        csvformat.codec("latin-1")


def test_bad_lines_are_errors_of_their_own_and_quoted_line_breaks_are_kept() -> None:
    body = (HEADER
            + 'H1,S1,P1,"张\n三",I10\n'             # lines 2-3: one record
            + "H1,S2,P2,x,I10,extra\n"             # line 4: a cell beyond the header
            + "H1,S3,P3,x,I10,,\n"                 # line 5: empty extra cells are no content
            + "H1,S4,P4," + "x" * 5000 + ",I10\n"  # line 6: over the bound
            + 'H1,S5,P5,"unterminated,I10\n'       # line 7: runs on to the end
            + "H1,S6,P6,x,I10\n").encode()
    items = read(body)
    problems = {n: (p.field, p.code) for n, p in items if isinstance(p, Problem)}
    docs = {n: d for n, d in items if isinstance(d, dict)}
    assert docs[2]["psn_name"] == "张\n三" and docs[5]["setl_id"] == "S3"
    assert problems == {4: ("cells[5]", "CSV_EXTRA_CELLS"), 6: ("line", "LIST_TOO_LARGE"),
                        7: ("line", "CSV_MALFORMED")}


def test_jsonl_lines_are_bounded_as_they_stream() -> None:
    lines = csvformat.Lines(10)
    out = [*lines.feed(b"abc\n" + b"x" * 30), *lines.feed(b"yy\nlast"), *lines.close()]
    assert out == [(1, b"abc"), (2, None), (3, b"last")]


# --------------------------------------------------------------------------- timeliness


def test_timeliness_counts_the_lists_declaration_day_not_the_receive_time() -> None:
    received = datetime(2026, 12, 1, tzinfo=UTC)  # an import of history, years later
    problems = orjson.dumps([]).decode()
    rows = [("H1", date(2024, 3, 4), date(2024, 3, 10), received, problems),
            ("H1", date(2024, 3, 4), date(2024, 4, 20), received, problems),
            ("H1", date(2024, 3, 4), None, datetime(2024, 3, 5, tzinfo=UTC), problems)]
    (score,) = score_quality(stored_records(rows))
    assert (score.lists, score.timely) == (3, 2)
    (strict,) = score_quality(stored_records(rows), deadline_days=3)
    assert strict.timely == 1


def test_the_declared_day_is_the_lists_own() -> None:
    doc = national()
    doc["setlinfo"]["dcla_time"] = "2024-03-10 08:00:00"
    d = decide(doc)
    assert isinstance(d, Accepted) and d.declared == date(2024, 3, 10)
    message = {"infno": "4101A", "inf_time": "2024-03-12 08:00:00", "input": national()}
    d = decide(message, "4101A")
    assert isinstance(d, Accepted) and d.declared == date(2024, 3, 12), found(d)
