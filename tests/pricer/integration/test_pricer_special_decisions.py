"""The pricer consumes review's special-case decisions (特例单议, docs/domain.md §10): pay by
item and adjust the standard price the case again as a new version; a rejection writes none,
unless it overturns the approval the case is priced with (an appeal's rejection)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from pricer_testkit import points_policy, policy_doc
from sqlalchemy import select

from services.pricer import handlers, repository
from services.pricer.domain.grouped import SpecialDecision, reprices
from shared import migrate
from shared.db import create_engine
from shared.events import CaseFacts, CaseGrouped, Envelope, SpecialCaseDecided


def grouped(setl_id: str) -> CaseGrouped:
    f = CaseFacts.model_validate({
        "hospital_code": "H3", "setl_id": setl_id, "region": "R1", "psn_key": "k",
        "admission_date": date(2024, 3, 1), "discharge_date": date(2024, 3, 11),
        "insurance_type": "310", "total_cost": "20000.00", "patient_share": "1500.00"})
    return CaseGrouped(facts=f, scheme_id="chs-drg-1.1", mdc="MDCA", adrg="AB1", drg="AB11", status="SUCCESS")


def decided(case_id: str, decision: int, outcome: str, amount: str | None = None) -> Envelope:
    return Envelope.new(SpecialCaseDecided(hospital_code="H3", application_id=1, decision=decision, outcome=outcome,
                                           amount=None if amount is None else Decimal(amount), reason="panel"),
                        case_id=case_id, correlation_id="c", producer="review")


async def _versions(conn: Any, case_id: str) -> list[tuple[int, Decimal]]:
    r = repository.results.c
    return [(x.special_case, x.payment) for x in (await conn.execute(
        select(r.special_case, r.payment).where(r.case_id == case_id).order_by(r.id))).all()]


def test_only_an_approval_or_an_overturned_approval_reprices() -> None:
    reject, adjust = SpecialDecision(1, "reject"), SpecialDecision(1, "adjust_standard", Decimal("1.00"))
    assert not reprices(reject, None) and not reprices(SpecialDecision(2, "reject"), reject)
    assert reprices(adjust, None) and reprices(SpecialDecision(1, "pay_by_item"), None)
    assert reprices(SpecialDecision(2, "reject"), adjust)


async def _run(tmp_path: Path, doc: dict[str, Any], amount: str = "23456.78") -> dict[str, list[tuple[int, Decimal]]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await migrate.upgrade(engine, "pricer")
    policies = repository.Policies()
    try:
        async with engine.begin() as conn:
            await handlers.import_policy(conn, orjson.dumps(doc))
            await handlers.on_case_grouped(policies, conn, [
                Envelope.new(grouped(s), case_id=f"H3-{s}", correlation_id="c", producer="grouper")
                for s in ("R", "A", "P")])
        async with engine.begin() as conn:
            out = await handlers.on_special_case_decided(policies, conn, [
                decided("H3-R", 1, "reject"), decided("H3-A", 1, "adjust_standard", amount),
                decided("H3-P", 1, "pay_by_item")])
            assert sorted(e.case_id for e in out) == ["H3-A", "H3-P"]  # the rejection announces nothing
        async with engine.begin() as conn:  # the appeals: the rejection stands, the adjustment is overturned
            out = await handlers.on_special_case_decided(policies, conn, [
                decided("H3-R", 2, "reject"), decided("H3-A", 2, "reject")])
            assert [e.case_id for e in out] == ["H3-A"]
            kept = await repository.decisions_of(conn, ["H3-R", "H3-A"])
            assert (kept["H3-R"].decision, kept["H3-A"].outcome) == (2, "reject")
            return {c: await _versions(conn, c) for c in ("H3-R", "H3-A", "H3-P")}
    finally:
        await engine.dispose()


async def test_a_rejection_writes_no_priced_version(tmp_path: Path) -> None:
    versions = await _run(tmp_path, policy_doc())
    standard = Decimal("25000.00")  # 10000.00 per RW × 2.5
    assert versions["H3-R"] == [(0, standard)]
    assert versions["H3-A"] == [(0, standard), (1, Decimal("23456.78")), (2, standard)]
    assert versions["H3-P"] == [(0, standard), (1, Decimal("20000.00"))]


async def test_adjusting_under_the_point_method_pays_the_decided_amount_to_the_fen(tmp_path: Path) -> None:
    # 18000.50 / 123.456789 = 145.8041 points, × 123.456789 = 18000.51 if paid from the points
    pv = "123.456789"
    assert points_policy(points={"provisional_point_value": pv}).points.provisional_point_value == Decimal(pv)
    doc = policy_doc(method="points", points={"scale": 100, "provisional_point_value": pv})
    versions = await _run(tmp_path, doc, amount="18000.50")
    assert versions["H3-A"][1] == (1, Decimal("18000.50"))
