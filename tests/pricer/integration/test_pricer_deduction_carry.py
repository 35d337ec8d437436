"""A review deduction larger than a month's pre-settlement (docs/domain.md §8, §11): nothing
negative is paid; the rest is carried over to the hospital's next month, and what the year's
last month still carries is netted by the annual clearing, once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from pricer_testkit import policy_doc

from services.pricer import handlers, repository
from shared import migrate
from shared.db import create_engine
from shared.events import CaseFacts, CaseGrouped, DeductionConfirmed, Envelope


def grouped(setl_id: str, discharged: date) -> Envelope:
    f = CaseFacts.model_validate({
        "hospital_code": "H3", "setl_id": setl_id, "region": "R1", "psn_key": "k",
        "admission_date": date(discharged.year, discharged.month, 1), "discharge_date": discharged,
        "insurance_type": "310", "total_cost": "20000.00", "patient_share": "0.00"})
    return Envelope.new(CaseGrouped(facts=f, scheme_id="chs-drg-1.1", mdc="MDCA", adrg="AB1", drg="AB11",
                                    status="SUCCESS"), case_id=f"H3-{setl_id}", correlation_id="c", producer="grouper")


def deduction(flag_id: int, amount: str) -> Envelope:
    return Envelope.new(DeductionConfirmed(flag_id=flag_id, hospital_code="H3", amount=Decimal(amount),
                                           rule="LOW_STANDARD_ADMISSION", decided_by="token:r",
                                           decided_at=datetime.now(UTC)),
                        case_id=f"flag:{flag_id}", correlation_id="c", producer="review")


async def test_a_deduction_beyond_the_month_is_carried_to_the_next_month_and_the_clearing(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await migrate.upgrade(engine, "pricer")
    policies = repository.Policies()
    try:
        async with engine.begin() as conn:
            # no quality deposit: the carry alone (the deposit's own tests hold it beside)
            await handlers.import_policy(conn, orjson.dumps(policy_doc(settlement={"quality_deposit_share": "0"})))
            # one 25,000.00 case a month (10,000.00 per RW × 2.5): 23,750.00 pre-settled at 95 %
            await handlers.on_case_grouped(policies, conn, [
                grouped("M3", date(2024, 3, 11)), grouped("M4", date(2024, 4, 11)), grouped("M5", date(2024, 5, 11)),
                grouped("M6", date(2024, 6, 11))])
            await handlers.on_deduction_confirmed(conn, [deduction(1, "50000.00")])
            [march] = await handlers.run_monthly_presettlement(conn, "test-2024", "2024-03")
            [april] = await handlers.run_monthly_presettlement(conn, "test-2024", "2024-04")
            await handlers.on_deduction_confirmed(conn, [deduction(2, "100.00")])
            [may] = await handlers.run_monthly_presettlement(conn, "test-2024", "2024-05")
            await handlers.on_deduction_confirmed(conn, [deduction(3, "30000.00")])
            [june] = await handlers.run_monthly_presettlement(conn, "test-2024", "2024-06")  # the year's last
            clearing = await handlers.run_annual_clearing(conn, "test-2024", "2024", Decimal("1000000.00"))
            statements = await repository.list_statements(conn, "H3", "2024-04")
    finally:
        await engine.dispose()
    lines = [(s.amount("presettled"), s.amount("carried_in"), s.amount("carried_over")) for s in (march, april, may, june)]
    assert lines == [(Decimal("0.00"), Decimal("0"), Decimal("26250.00")),
                     (Decimal("0.00"), Decimal("26250.00"), Decimal("2500.00")),
                     (Decimal("21150.00"), Decimal("2500.00"), Decimal("0.00")),
                     (Decimal("0.00"), Decimal("0"), Decimal("6250.00"))]
    assert statements[0]["document"]["lines"]["carried_over"] == "2500.00"  # shown on the statement
    [h] = clearing.hospitals
    assert (h.review_deductions, h.deductions_carried_over, h.presettled) == (
        Decimal("80100.00"), Decimal("6250.00"), Decimal("21150.00"))
    assert h.presettled + h.balance == h.fund_amount - Decimal("80100.00")
