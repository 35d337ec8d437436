"""`drgdip import` reads GBK CSV (declared or detected) and refuses UTF-16 in one line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from drgdip.cli import app

runner = CliRunner()
CSV = ("hospital_code,setl_id,psn_no,sex,age,admission_date,discharge_date,los,diagnoses,psn_name\n"
       "H35050001,G1,P1,1,40,2024-03-01,2024-03-05,4,I21.000,张三\n"
       "H35050001,G2,P2,2,41,2024-03-02,2024-03-05,3,I10.x00,李四\n")


def test_import_reads_gbk_and_refuses_utf16_in_one_line(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"
    gbk = tmp_path / "history.csv"
    gbk.write_bytes(CSV.encode("gbk"))
    for options in (["--encoding", "gbk"], []):
        result = runner.invoke(app, ["import", str(gbk), "--db", db, *options])
        assert result.exit_code == 0, result.output
        assert "2 lines" in result.output and "0 rejected" in result.output, result.output
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(CSV.encode("utf-16"))
    refused = runner.invoke(app, ["import", str(utf16), "--db", db])
    assert refused.exit_code == 2
    assert "encoding: the file is UTF-16" in refused.output and "Traceback" not in refused.output
