"""The README's "Bureau work from the command line" runs as written: every command of its sh
blocks, in order, in an empty folder on a fresh database.

The commands are read from README.md, so the test follows the README. Only the sizes
(`--cases`, `--hospitals`) and the `../shared` folder (tests' `paths.SHARED`) are substituted;
`export` sets the environment, `cp` copies, every `drgdip …` runs through the CLI app."""

from __future__ import annotations

import csv
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from paths import REPO, SHARED
from typer.testing import CliRunner, Result

from drgdip.cli import app

SECTION = "## Bureau work from the command line"
SIZES = {"--cases": "3000", "--hospitals": "5"}  # the README's 100,000 lists of 20 hospitals, smaller


def readme_commands() -> list[list[str]]:
    """The section's sh blocks as argument lists: continuations joined, comments dropped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end != -1 else len(text)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 2, "the section has two sh blocks (DRG, then DIP)"
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append([substitute(w, words[i - 1] if i else "") for i, w in enumerate(words)])
    return commands


def substitute(word: str, before: str) -> str:
    if before in SIZES and word.isdigit():
        return SIZES[before]
    if word == "../shared" or word.startswith("../shared/"):
        return str(SHARED) + word[len("../shared"):]
    return word


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def number(pattern: str, output: str) -> int:
    m = re.search(pattern, output)
    assert m, f"{pattern!r} not in:\n{output}"
    return int(m.group(1).replace(",", ""))


def check(command: list[str], result: Result) -> None:
    """What each command must have done, beyond exit code 0."""
    out = result.output
    match command[:2]:
        case ["generate", *_]:
            assert len(lines(Path("region.jsonl"))) == int(SIZES["--cases"])
            assert len(orjson.loads(Path("region.jsonl.hospitals.json").read_bytes())) == int(SIZES["--hospitals"])
        case ["import", *_]:
            assert number(r"(\d+) accepted", out) > 0.9 * int(SIZES["--cases"])
        case ["serve", *_]:
            assert number(r"pipeline idle: (\d+) cases", out) > 0.9 * int(SIZES["--cases"])
        case ["calibrate", *_]:
            assert Path("out/weights-350500-2025.json").is_file() and rows(Path("out/calibration-groups.csv"))
        case ["policy", "from-calibration"]:
            assert orjson.loads(Path("policy.json").read_bytes())["policy_id"] == "350500-2025-drg-rate"
        case ["simulate", *_]:
            assert rows(Path("out/simulation-hospitals.csv")) and lines(Path("out/simulation-cases.jsonl"))
        case ["price", *_]:
            priced = lines(Path("priced.jsonl"))
            assert len(priced) == len(lines(Path("out/simulation-cases.jsonl")))
            assert {p["policy_id"] for p in priced} == {"350500-2025-drg-rate"}
        case ["reprice", *_]:
            assert number(r"(\d+) re-priced", out) > 0  # the 2025 lists, priced before the policy
        case ["settle", *_]:
            csv_file = Path(command[command.index("--csv") + 1])
            statements = rows(csv_file)
            assert statements and {r["policy_id"] for r in statements} == {"350500-2025-drg-rate"}, csv_file
        case ["regroup", *_]:
            assert number(r"regrouped (\d+) cases", out) > 0 and "migration" in out
        case ["dip", "build-catalogue"]:
            assert Path("out/dip-catalogue-350500-2025.json").is_file()
        case ["dip", "point-value"]:
            policy = orjson.loads(Path("dip-policy.json").read_bytes())
            assert (policy["region"], policy["valid_from"]) == ("350500", "2025-01-01")
        case ["dip", "import-policy"]:
            assert "imported DIP policy 350500-2025-dip" in out
        case ["dip", "group"]:
            assert len(lines(Path("dip.jsonl"))) > 0.9 * int(SIZES["--cases"])
        case ["compare", *_]:
            assert rows(Path("out/comparison-hospitals.csv"))


def test_the_readme_bureau_commands_run_in_order_on_a_fresh_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DRGDIP_DB", "DRGDIP_BUS", "DRGDIP_SCHEMES_DIR", "DRGDIP_DICTIONARY_SCHEME", "DRGDIP_POLICY_FILE"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    ran: list[str] = []
    commands = readme_commands()
    handlers: dict[str, Callable[[list[str]], None]] = {
        "export": lambda args: [monkeypatch.setenv(*a.split("=", 1)) for a in args],
        "cp": lambda args: shutil.copy(REPO / args[0] if (REPO / args[0]).exists() else args[0], args[1]),
    }
    for words in commands:
        program, args = words[0], words[1:]
        if program == "drgdip":
            result = runner.invoke(app, args)
            assert result.exit_code == 0, f"{shlex.join(words)}\n{result.output}"
            check(args, result)
        else:
            assert program in handlers, f"the test does not know how to run {shlex.join(words)}"
            handlers[program](args)
        ran.append(shlex.join(words[:3]))
    assert "DRGDIP_DB" in {w.split("=")[0] for c in commands if c[0] == "export" for w in c[1:]}
    assert (tmp_path / "var" / "bureau.db").is_file()  # the one database the export names
    assert len(ran) >= 20, ran
