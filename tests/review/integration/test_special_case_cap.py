"""The special-case cap holds under concurrent applications (docs/domain.md §10): 50 hospitals'
requests at once through the gateway, at the edge of the cap, on SQLite and on PostgreSQL
(where the requests run on connections of their own and meet at the region-quarter's row lock)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import SHARED, api_client, count

from drgdip.stages import build_runtime
from services.review import handlers as review_handlers
from services.review import special_cases as special
from services.review.domain import special_cases as sc
from shared import migrate
from shared.errors import Conflict
from shared.events import CaseFacts, CasePriced, Envelope
from shared.periods import InForce

HOSPITAL = "H35050001"
OTHER = "H35050002"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("special_cap"))


def priced(i: int, hospital: str, los: int, discharged: date = date(2024, 5, 20)) -> Envelope:
    """A priced DRG case as review receives it (`case-priced`)."""
    facts = CaseFacts(hospital_code=hospital, setl_id=f"S{i:05d}", region="350500", psn_key=f"p{i}",
                      admission_date=discharged - timedelta(days=los), discharge_date=discharged,
                      total_cost=Decimal("20000.00"), treatment_region="350500")
    return Envelope.new(CasePriced(facts=facts, drg="FM19", status="PRICED", case_type="normal",
                                   payment=Decimal("10000.00"), group_mean_cost=Decimal("15000.00")),
                        case_id=f"{hospital}-S{i:05d}", correlation_id="cap", producer="test")


async def seed(engine: Any) -> list[str]:
    """200 DRG discharges in 2024Q2 (cap: 5 % = 10); 60 long stays, all of one hospital (its
    quota: the whole cap)."""
    envs = [priced(i, HOSPITAL if i < 100 else OTHER, 70 if i < 60 else 5) for i in range(200)]
    async with engine.begin() as conn:
        await review_handlers.on_case_priced(conn, envs)
    return [e.case_id for e in envs[:60]]


async def test_fifty_concurrent_applications_at_the_edge_of_the_cap_accept_exactly_the_cap(db_url: str) -> None:
    rt = build_runtime("all", db=db_url, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        eligible = await seed(rt.engine)
        async with await api_client(rt, "hospital", HOSPITAL) as hospital:
            answers = await asyncio.gather(*(hospital.post("/api/v1/special-cases", json={
                "case_id": case_id, "reason": "long_stay", "text": "长期住院"}) for case_id in eligible[:50]))
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 10 + [409] * 40, [r.text for r in answers if r.status_code not in (201, 409)]
        accepted = [r.json() for r in answers if r.status_code == 201]
        assert sorted(int(a["quota"]["used"]) for a in accepted) == list(range(1, 11))
        refusal = next(r.json()["error"] for r in answers if r.status_code == 409)
        assert refusal["code"] == "SPECIAL_CASE_QUOTA_EXHAUSTED"
        assert refusal["details"][0]["numbers"].items() >= {"cap": "10", "quota": "10", "used": "10",
                                                            "drg_discharges": "200", "load": "60"}.items()
        assert await count(rt.engine, "review_special_cases") == 10
        assert await count(rt.engine, "review_special_quota", "applications = 10") == 1
        assert await count(rt.engine, "review_audit", "action = 'special-case.applied'") == 10
        # every refusal is audited: who, when, the case, the rule that refused
        refused = await count(rt.engine, "review_audit", "action = 'special-case.refused' AND "
                              "after LIKE '%SPECIAL_CASE_QUOTA_EXHAUSTED%' AND actor LIKE 'token:%'")
        assert refused == 40
    finally:
        await rt.stop()


async def test_concurrent_transactions_meet_at_the_lock(db_url: str) -> None:
    """The same at the handler, each application in a transaction of its own, all at once (on
    PostgreSQL without the row lock more than the cap get in)."""
    rt = build_runtime("review", db=db_url, bus="memory://", log_level="WARNING")
    try:
        await migrate.upgrade(rt.engine, "review")
        eligible = await seed(rt.engine)
        who = special.Who("token:0123456789ab", "hospital", HOSPITAL)

        async def apply(case_id: str) -> str:
            try:
                async with rt.engine.begin() as conn:
                    await special.apply(conn, who, InForce([]), case_id, sc.Reason.LONG_STAY, "长期住院", [])
            except Conflict as e:
                return e.code
            return "accepted"

        outcomes = await asyncio.gather(*(apply(case_id) for case_id in eligible[:50]))
        assert sorted(outcomes) == ["SPECIAL_CASE_QUOTA_EXHAUSTED"] * 40 + ["accepted"] * 10
        assert await count(rt.engine, "review_special_cases") == 10
    finally:
        await rt.engine.dispose()
