"""`drgdip demo`: a small region end to end, and the invariants the bureau relies on.

- every imported list ends in the read model as reviewed (or withdrawn); QC rejections are counted;
- the annual clearing under the point method spends the budget exactly, to the fen
  (Σ hospital amounts + reserve = budget; settlement.py withholds the reserve first);
- every readmission pair the generator seeded (`setlinfo._synthetic`) is flagged by review;
- the summary shows the monitoring flags found and a special-case round, each decision priced
  again as a new version;
- without a scheme folder the demo runs on the bundled sample scheme and says so.
"""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from helpers import SHARED
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from drgdip.cli import app
from drgdip.demo import DemoOptions, DemoResult, run_demo
from services.gateway.repository import cases as read_model
from services.ingest.domain.intake import case_id_for
from services.pricer.repository import statements
from services.review.repository import results as reviews
from shared.db import create_engine
from shared.money import to_fen

NATIONAL = SHARED / "schemes" / "chs-drg-1.1"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    if not (NATIONAL / "scheme.json").is_file():
        pytest.skip(f"national scheme not found at {NATIONAL}")
    text = io.StringIO()
    quiet = Console(file=text, width=150)
    options = DemoOptions(cases=1500, hospitals=6, seed=3, data_dir=tmp_path_factory.mktemp("demo"),
                          scheme_path=NATIONAL, serve=False, timeout=300)
    return asyncio.run(run_demo(options, console=quiet, out=quiet)), text.getvalue()


@pytest.fixture(scope="module")
def demo(demo_run: tuple[DemoResult, str]) -> DemoResult:
    return demo_run[0]


async def _rows(result: DemoResult, query):  # type: ignore[no-untyped-def]
    engine = create_engine(result.db_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(query)).all()
    finally:
        await engine.dispose()


async def test_every_imported_list_is_reviewed_or_withdrawn(demo: DemoResult) -> None:
    imported = demo.imported
    assert imported["lines"] == 1500
    assert imported["accepted"] + imported["duplicate"] + imported["withdrawn"] + imported["rejected"] == 1500
    assert 0 < imported["rejected"] == len(imported["rejections"])  # the generator seeds bad records
    statuses = dict(await _rows(demo, select(read_model.c.case_id, read_model.c.status)))
    assert len(statuses) == imported["accepted"]
    assert set(statuses.values()) <= {"reviewed", "withdrawn"}
    assert not demo.sample and demo.scheme.id == "chs-drg-1.1"


async def test_annual_clearing_spends_the_budget_to_the_fen(demo: DemoResult) -> None:
    c, policy = demo.clearing, demo.policy
    assert policy.method == "points"
    assert c.budget == demo.budget == to_fen(demo.budget)
    assert c.reserve == to_fen(c.budget * policy.settlement.reserve_share)
    assert c.total_drg_amount + c.reserve == c.budget
    # what the reserve did not pay out for overspend sharing returns to the fund
    hospitals = sum((h.drg_amount - h.recovered + h.shared for h in c.hospitals), Decimal(0))
    assert hospitals + sum((h.recovered for h in c.hospitals), Decimal(0)) + c.reserve_left == c.budget
    # the stored statements say the same, and the simulation priced the same cases
    docs = [orjson.loads(d) for (d,) in await _rows(demo, select(statements.c.document).where(
        statements.c.kind == "annual"))]
    assert sum(Decimal(d["lines"]["drg_amount"]) for d in docs) + c.reserve == c.budget
    assert c.point_value == demo.simulation.point_value
    assert sum(h.points for h in c.hospitals) > 0
    assert len(demo.monthly) >= len(c.hospitals)


async def test_every_seeded_readmission_pair_is_flagged(demo: DemoResult) -> None:
    lists = [orjson.loads(line) for line in demo.lists_file.open("rb")]
    by_setl = {sl["setlinfo"]["setl_id"]: sl["setlinfo"] for sl in lists}
    accepted = {cid for (cid,) in await _rows(demo, select(read_model.c.case_id))}
    flags = {cid: orjson.loads(f) for cid, f in await _rows(demo, select(reviews.c.case_id, reviews.c.flags))}
    pairs = 0
    for s in by_setl.values():
        syn = s.get("_synthetic") or {}
        other = by_setl.get(syn.get("related_setl_id") or "")
        if syn.get("pattern") != "readmission_15d" or other is None or s["adm_time"] <= other["adm_time"]:
            continue  # only the later stay of each pair is a readmission
        later, earlier = (case_id_for(x["fixmedins_code"], x["setl_id"]) for x in (s, other))
        if later not in accepted or earlier not in accepted:
            continue  # one of the two was stopped by intake QC
        pairs += 1
        assert earlier in {f["related_case_id"] for f in flags[later]}, f"{later} not flagged as readmission"
    assert pairs > 0


def test_the_summary_shows_the_flags_found_and_a_decided_special_case_round(demo_run: tuple[DemoResult, str]) -> None:
    demo, text = demo_run
    levels = {level for level, _rule, _severity, n in demo.flags if n > 0}
    assert "case" in levels and sum(n for *_x, n in demo.flags) > 0
    assert "Monitoring flags" in text and "Special-case round" in text
    assert all(rule in text for _level, rule, _s, _n in demo.flags)
    assert demo.flag_examples and all(subject in text for _r, subject, _m in demo.flag_examples)
    # one of each outcome, decided by the panel; an approval is priced again as a new version,
    # a rejection keeps the price the case had
    assert [x.outcome for x in demo.special] == ["pay_by_item", "adjust_standard", "reject"]
    assert {x.status for x in demo.special} == {"decided"}
    for x in demo.special:
        assert x.case_id in text
        if x.outcome == "reject":
            assert [p["special_case"] for p in x.prices] == [0] * len(x.prices) and x.after == x.before
        else:
            assert [p["special_case"] for p in x.prices][-1] == 1 and x.prices[-2]["special_case"] == 0
    adjusted = demo.special[1]
    assert adjusted.amount is not None and adjusted.after is not None and adjusted.before is not None
    assert adjusted.after == adjusted.amount  # the decided amount, to the fen
    assert "psn_name" not in text


def test_demo_falls_back_to_the_sample_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRGDIP_SCHEME_PATH", raising=False)
    r = CliRunner().invoke(app, ["demo", "--cases", "400", "--hospitals", "3", "--no-serve",
                                 "--data-dir", str(tmp_path / "demo"), "--scheme-path", str(tmp_path / "missing")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "SAMPLE scheme" in text and "NOT FOR PAYMENT" in text
    assert "scheme sample-drg-0.1" in text
    policy = orjson.loads((tmp_path / "demo" / "policy-demo-350500-2024.json").read_bytes())
    assert policy["scheme_id"] == "sample-drg-0.1"
