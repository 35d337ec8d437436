"""The monitoring rules through the embedded pipeline: lists sent to ingest come out of review
flagged as expected, with the parameters imported for the region, and a new version of a list
replaces its open flags (the history is kept)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import SHARED, case_id, count, national_list, policy, simple_lists, wait_until
from sqlalchemy import select

from drgdip.stages import build_runtime
from services.grouper.domain import cc_lift, engine_input, load_scheme
from services.ingest.domain.intake import Received
from services.review import handlers, repository
from shared.events import CaseReceived

REGION = "350500"
HOSPITAL = "H35050001"  # level 3 in the test policy


def _grouping(scheme: Any, sl: dict[str, Any]) -> Any:
    case = engine_input(CaseReceived.model_validate({
        "facts": {"hospital_code": "H", "setl_id": "S", "psn_key": "P"}, "sex": sl["sex"], "age": sl["age"],
        "age_days": sl["age_days"], "birth_weight": sl["birth_weight"], "diagnoses": sl["diagnoses"],
        "procedures": sl["procedures"]}))
    g = scheme.group(case, trace=True)
    return g, cc_lift(scheme, case, g, code_mode="raw")


def _list(sl: dict[str, Any], setl_id: str, person: str, adm: date, los: int, cost: str, *,
          own: str = "0.00", planned: bool = False, **changes: Any) -> dict[str, Any]:
    simple = sl | {"setl_id": setl_id, "psn_no": person, "hospital_code": HOSPITAL, "los": los,
                   "admission_date": adm.isoformat(), "discharge_date": (adm + timedelta(days=los)).isoformat()}
    n = national_list(simple | changes)
    n["setlinfo"] |= {"medfee_sumamt": cost, "psn_selfpay": "0.00", "psn_ownpay": own,
                      "days_rinp_flag_31": "2" if planned else "1"}
    return n


@pytest.fixture
async def pipeline(tmp_path: Path):
    scheme = load_scheme(SHARED / "schemes" / "chs-drg-1.1")
    pool = simple_lists(400)
    graded = [(sl, *_grouping(scheme, sl)) for sl in pool]
    plain = next(sl for sl, g, lift in graded if g.grouped and g.drg[-1] in "59" and lift is None)
    plain_drg = next(g.drg for sl, g, _ in graded if sl is plain)
    lifted, lifted_g, lift = next((sl, g, lift) for sl, g, lift in graded if lift is not None)
    other = next(sl for sl, g, _ in graded if g.grouped and g.adrg not in (plain_drg[:3], lifted_g.adrg))
    chemo = other | {"diagnoses": ["Z51.100x001"] + other["diagnoses"][1:]}
    means = {plain_drg: "10000.00", lifted_g.drg: "20000.00", lift.drg_without: "15000.00"}
    doc = policy() | {"group_mean_costs": means}
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(doc))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                       schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")
    await rt.start()
    try:
        yield rt, dict(plain=plain, plain_drg=plain_drg, lifted=lifted, lift=lift, chemo=chemo)
    finally:
        await rt.stop()


async def _send(rt: Any, lists: list[dict[str, Any]], reviewed: int) -> None:
    intake = next(s for s in rt.stages if s.name == "ingest").service
    outcomes = await intake.receive([Received("native", orjson.dumps(n)) for n in lists])
    assert all(o.status == "accepted" for o in outcomes), [o for o in outcomes if o.status != "accepted"]

    async def done() -> bool:
        return await count(rt.engine, "review_results", "review_version >= 1") >= reviewed

    await wait_until(done, 120, f"{reviewed} reviewed cases")


async def _flags(rt: Any) -> dict[str, list[tuple[str, str | None]]]:
    async with rt.engine.connect() as conn:
        rows = (await conn.execute(select(repository.results))).all()
    return {r.case_id: [(f["rule"], f.get("related_case_id")) for f in orjson.loads(r.flags)] for r in rows}


async def test_the_case_level_rules_flag_the_expected_cases(pipeline) -> None:
    rt, c = pipeline
    async with rt.engine.begin() as conn:  # the bureau's parameters for the region
        await handlers.import_rules(conn, orjson.dumps({"format": "drgdip.review-rules/1", "rules": {
            "PRIMARY_CARE_AT_TERTIARY": {"groups": ["ZZ9"]},
            "COST_SHIFTING": {"min_cases": 3}}}), REGION, date(2024, 1, 1))
    d = date(2024, 3, 1)
    plain, lifted, chemo = c["plain"], c["lifted"], c["chemo"]
    lists = [
        _list(plain, "SA1", "P1", d, 6, "9000.00"),  # index stay
        _list(plain, "SA2", "P1", d + timedelta(days=10), 5, "9500.00"),  # 4 days later, same ADRG
        _list(plain, "PC1", "P2", d, 6, "9000.00"),  # surgery, then planned chemotherapy 8 days later
        _list(chemo, "PC2", "P2", d + timedelta(days=14), 3, "6000.00", planned=True),
        _list(plain, "LS1", "P3", d, 1, "1500.00"),  # 1 day, 0.15 of the mean: low standard
        _list(lifted, "UP1", "P4", d, 6, "12000.00"),  # lifted by one diagnosis, below the lower mean
        _list(lifted, "UP2", "P5", d, 6, "18000.00"),  # lifted, but costs more than the lower mean
    ] + [_list(plain, f"CS{i}", f"Q{i}", d + timedelta(days=40), 6, "10000.00", own="500.00")
         for i in range(3)] + [
        _list(plain, "CSX", "Q9", d + timedelta(days=60), 6, "10000.00", own="3000.00")]  # 30 % vs 5 %
    await _send(rt, lists, len(lists))
    flags = await _flags(rt)
    cid = {n["setlinfo"]["setl_id"]: case_id(n) for n in lists}
    assert flags[cid["SA2"]] == [("SPLIT_ADMISSION", cid["SA1"])]
    assert flags[cid["PC2"]] == [] and flags[cid["PC1"]] == []
    assert flags[cid["LS1"]] == [("LOW_STANDARD_ADMISSION", None)]
    assert flags[cid["UP1"]] == [("UPCODING_SECONDARY", None)] and flags[cid["UP2"]] == []
    assert flags[cid["CSX"]] == [("COST_SHIFTING", None)]
    flagged = {k for k, v in flags.items() if v}
    assert flagged == {cid[s] for s in ("SA2", "LS1", "UP1", "CSX")}
    async with rt.engine.connect() as conn:
        up = (await repository.open_flags(conn, [cid["UP1"]]))[0]
        rules = (await conn.execute(select(repository.results.c.rules)
                                    .where(repository.results.c.case_id == cid["UP1"]))).scalar()
    assert up["evidence"]["drg_without"] == c["lift"].drg_without
    assert up["evidence"]["lower_group_mean_cost"] == "15000.00" and rules == f"{REGION} v1"

    # a new version of the low-standard list (a longer stay) replaces its open flag; history kept
    await _send(rt, [_list(plain, "LS1", "P3", d, 5, "9000.00")], len(lists))

    async def replaced() -> bool:
        return (await _flags(rt))[cid["LS1"]] == []

    await wait_until(replaced, 60, "the new version reviewed clean")
    async with rt.engine.connect() as conn:
        history = (await conn.execute(select(repository.flags.c.rule, repository.flags.c.status)
                                      .where(repository.flags.c.case_id == cid["LS1"]))).all()
    assert [tuple(r) for r in history] == [("LOW_STANDARD_ADMISSION", "superseded")]
