"""CLI: `drgdip scheme build` over the national scheme with the example change sets, and the
built folder through `scheme check`, `scheme diff --cases` and the grouper's scheme book."""

from __future__ import annotations

import hashlib
import json

import orjson
from grouper_testkit import oracle_cases, scheme_path
from paths import REPO
from typer.testing import CliRunner

from drgdip.cli import app
from services.grouper.domain import SchemeBook

EXAMPLES = REPO / "examples" / "changesets"


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _err(res) -> str:
    return res.stderr if hasattr(res, "stderr") else res.output


def test_build_check_diff_and_load_a_local_scheme(tmp_path):
    base, example = scheme_path("chs-drg-1.1"), EXAMPLES / "city-2025.json"
    out = tmp_path / "schemes" / "city"
    res = _run("scheme", "build", str(base), str(example), "--out", str(out))
    assert res.exit_code == 0, res.output
    digest = hashlib.sha256(example.read_bytes()).hexdigest()
    assert "built city-350500-2025" in res.output and digest in res.output
    manifest = json.loads((out / "scheme.json").read_text("utf-8"))
    assert manifest["derived_from"]["scheme"] == "chs-drg-1.1"
    assert manifest["derived_from"]["changeset"]["sha256"] == digest

    res = _run("scheme", "check", str(out))
    assert res.exit_code == 0 and "OK" in res.output, res.output

    cases = tmp_path / "cases.jsonl"
    cases.write_bytes(b"\n".join(orjson.dumps(c) for c in oracle_cases("chs-drg-1.1")))
    res = _run("scheme", "diff", str(base), str(out), "--cases", str(cases))
    assert res.exit_code == 0, res.output
    for text in ("split", "ES3C ES3E ES3F", "merge", "XJ13 XJ15", "XJ19", "OZ19",
                 "cases regrouped: 5000", "migration table", "LOCAL.RE1T.px"):
        assert text in res.output, text

    book = SchemeBook("chs-drg-1.1")
    book.load_folder(out.parent)
    assert "city-350500-2025" in book.schemes


def test_build_refuses_an_entry_rule_change_of_a_municipal_change_set(tmp_path):
    doc = json.loads((EXAMPLES / "province-es3-entry.json").read_text("utf-8"))
    res = _run("scheme", "build", str(scheme_path("chs-drg-1.1")),
               str(EXAMPLES / "province-es3-entry.json"), "--out", str(tmp_path / "p"))
    assert res.exit_code == 0, res.output
    doc["provincial"] = False
    municipal = tmp_path / "municipal.json"
    municipal.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    res = _run("scheme", "build", str(scheme_path("chs-drg-1.1")), str(municipal),
               "--out", str(tmp_path / "m"))
    assert res.exit_code == 1
    err = " ".join(_err(res).split())
    assert "operations[0].list (edit_list MDCE.dx)" in err and "MDC MDCE" in err
    assert "operations[1].list (edit_list ES3.dx)" in err and "ADRG ES3" in err
    assert not (tmp_path / "m").exists()


def test_build_keeps_an_existing_folder_unless_told(tmp_path):
    base, example = str(scheme_path("chs-drg-1.1")), str(EXAMPLES / "city-2025.json")
    out = tmp_path / "city"
    assert _run("scheme", "build", base, example, "--out", str(out)).exit_code == 0
    res = _run("scheme", "build", base, example, "--out", str(out))
    assert res.exit_code == 2 and "not empty" in _err(res)
    assert _run("scheme", "build", base, example, "--out", str(out), "--overwrite").exit_code == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("x", "utf-8")
    res = _run("scheme", "build", base, example, "--out", str(other), "--overwrite")
    assert res.exit_code == 2 and (other / "a.txt").exists()
    res = _run("scheme", "build", base, str(tmp_path / "missing.json"), "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and "change set not found" in _err(res)
