"""A priced row keeps the `case-grouped` payload it was priced from, not its pricing input as
well: simulations and a draft's impact make the input from the payload as the pricing did
(`case_to_price`); a row priced before the payload was kept reads the input it stored."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from pricer_testkit import make_policy
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.pricer import repository
from services.pricer.cli import in_transaction
from services.pricer.domain.grouped import case_to_price, price_grouped
from services.pricer.domain.pricing import CaseToPrice
from shared.events import CaseFacts, CaseGrouped
from shared.periods import InForce

POLICY = make_policy()  # region R1, 2024
POLICIES = InForce([(POLICY.region, POLICY.valid_from, POLICY.valid_to, POLICY.version, POLICY)])


def _grouped(setl_id: str) -> CaseGrouped:
    f = CaseFacts.model_validate({
        "hospital_code": "H3", "setl_id": setl_id, "region": "R1", "psn_key": "k",
        "admission_date": date(2024, 3, 1), "discharge_date": date(2024, 3, 11), "insurance_type": "310",
        "total_cost": "20000.005", "patient_share": "1500.00", "fees": {"01": "19000.004", "02": "1000"}})
    return CaseGrouped(facts=f, scheme_id="chs-drg-1.1", mdc="MDCA", adrg="AB1", drg="AB11", status="SUCCESS")


def test_the_pricing_inputs_are_made_from_the_kept_payload_or_read_as_stored(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    now = datetime.now(UTC)
    g1, g2 = _grouped("S1"), _grouped("S2")
    legacy = case_to_price("H3-S2", g2).model_copy(update={"hospital_level": 2, "per_diem": True})

    async def store(conn: AsyncConnection) -> None:
        row = repository.result_row("H3-S1", g1, price_grouped("H3-S1", g1, POLICIES, InForce([])), now)
        assert row["case_input"] is None and row["grouped"] is not None
        old = repository.result_row("H3-S2", g2, price_grouped("H3-S2", g2, POLICIES, InForce([])), now)
        old |= {"grouped": None, "case_input": legacy.model_dump_json()}  # priced before pricer_0007
        await conn.execute(insert(repository.results), [row, old])

    async def read(conn: AsyncConnection) -> tuple[list[CaseToPrice], list[CaseToPrice]]:
        return (await repository.load_cases_to_price(conn, "R1", 2024),
                await repository.hospital_cases_to_price(conn, "R1", "H3", None))

    in_transaction(db, store)
    by_year, by_hospital = in_transaction(db, read)
    want = {"H3-S1": case_to_price("H3-S1", g1), "H3-S2": legacy}
    assert {c.case_id: c for c in by_year} == want == {c.case_id: c for c in by_hospital}
    # the input as the pricing made it: the amounts to the fen, LOS from the dates
    made = {c.case_id: c for c in by_year}["H3-S1"]
    assert (made.total_cost, made.fees, made.los) == (
        Decimal("20000.01"), {"01": Decimal("19000.00"), "02": Decimal("1000.00")}, 10)
