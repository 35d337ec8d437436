"""CLI: `group` over a few lines including bad ones, `scheme check`, `scheme diff`."""

from __future__ import annotations

import orjson
import typer
from grouper_testkit import SHARED, oracle_cases, scheme_path, write_scheme
from typer.testing import CliRunner

from services.grouper.cli import group_command, scheme_app


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("group")(group_command)
    app.add_typer(scheme_app, name="scheme")
    return app


def _runner() -> CliRunner:
    return CliRunner()


def test_group_command_writes_one_line_per_case_and_skips_bad_lines(tmp_path):
    cases = oracle_cases("chs-drg-1.1")[:5]
    lines = [orjson.dumps(c).decode() for c in cases[:3]]
    lines += ["{not json", "[1, 2]", "", orjson.dumps(cases[3]).decode()]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "out.jsonl"
    res = _runner().invoke(
        _app(),
        ["group", "--scheme-path", str(scheme_path("chs-drg-1.1")), "--input", str(src), "--output", str(out)],
    )
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [r["id"] for r in rows] == [c["id"] for c in cases[:4]]
    for r, c in zip(rows, cases, strict=False):
        assert set(r) == {"id", "mdc", "adrg", "drg", "status"}
        assert {k: r[k] for k in ("mdc", "adrg", "drg", "status")} == c["expected"]
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "line 4: invalid JSON" in err
    assert "line 5: not a JSON object" in err
    assert "cases: 4" in err
    assert "入组率" in err and "cases per second" in err
    assert "bad lines skipped: 2" in err


def test_group_command_trace_and_mapped(tmp_path):
    cases = oracle_cases("quanzhou-2023")[:3]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(c) for c in cases))
    out = tmp_path / "out.jsonl"
    res = _runner().invoke(
        _app(),
        ["group", "--scheme-path", str(scheme_path("quanzhou-2023")), "--input", str(src),
         "--output", str(out), "--code-mode", "mapped", "--trace"],
    )
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    for r, c in zip(rows, cases, strict=True):
        assert {k: r[k] for k in ("mdc", "adrg", "drg", "status")} == c["expected_mapped"]
        assert r["trace"]["code_mode"] == "mapped"


def test_failures_are_summarised_by_status(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "sex": 5, "diagnoses": ["D1"]}\n{"id": "b", "diagnoses": ["D2"], "sex": 1, "age": 30}\n', "utf-8")
    res = _runner().invoke(
        _app(),
        ["group", "--scheme-path", str(write_scheme(tmp_path / "s")), "--input", str(src),
         "--output", str(tmp_path / "o.jsonl")],
    )
    assert res.exit_code == 0
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "50.00% (1/2)" in err and "CHECK_FAILED 1" in err


def test_scheme_check(tmp_path):
    res = _runner().invoke(_app(), ["scheme", "check", str(scheme_path("quanzhou-2023"))])
    assert res.exit_code == 0, res.output
    assert "362" in res.output and "OK" in res.output
    broken = write_scheme(tmp_path / "s")
    (broken / "mcc.tsv").write_text("oops\n", "utf-8")
    res = _runner().invoke(_app(), ["scheme", "check", str(broken)])
    assert res.exit_code == 1


def test_scheme_diff_with_cases(tmp_path):
    src = tmp_path / "cases.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(c) for c in oracle_cases("chs-drg-1.1")[:500]))
    res = _runner().invoke(
        _app(),
        ["scheme", "diff", str(scheme_path("chs-drg-1.1")), str(scheme_path("quanzhou-2023")),
         "--cases", str(src)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "MDC order changed" in res.output
    assert "AA1" in res.output and "J68.200" in res.output
    assert "cases regrouped: 500" in res.output and "migration table" in res.output


def test_shared_path_is_configurable():
    assert (SHARED / "schemes").is_dir()
