"""Pricing a grouped case (the decision the pricer's consumer applies to every `case-grouped`):
the DRG policy of the treatment region in force on the discharge date, the status, and the
figures the stored row and `case-priced` share."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pricer_testkit import make_policy

from services.pricer.domain.grouped import case_to_price, price_from_dict, price_grouped
from shared.events import CaseFacts, CaseGrouped
from shared.periods import InForce

POLICY = make_policy()  # region R1, 2024
POLICIES = InForce([(POLICY.region, POLICY.valid_from, POLICY.valid_to, POLICY.version, POLICY)])
NO_DIP: InForce = InForce([])


def grouped(**facts: object) -> CaseGrouped:
    f = CaseFacts.model_validate({
        "hospital_code": "H3", "setl_id": "S1", "region": "R1", "psn_key": "k",
        "admission_date": date(2024, 3, 1), "discharge_date": date(2024, 3, 11),
        "insurance_type": "310", "total_cost": "20000.00", "patient_share": "1500.00"} | facts)
    return CaseGrouped(facts=f, scheme_id="chs-drg-1.1", mdc="MDCA", adrg="AB1", drg="AB11",
                       status="SUCCESS")


def test_a_case_in_force_is_priced_by_drg_with_the_shared_figures() -> None:
    r = price_grouped("H3-S1", grouped(), POLICIES, NO_DIP)
    assert (r.status, r.method, r.dip_group) == ("PRICED", "drg", None)
    assert r.case.los == 10 and r.case == case_to_price("H3-S1", grouped())
    # 10000.00 per RW × 2.5 × 1.0 = 25000.00; fund = 25000.00 − 1500.00
    assert (r.figures["weight"], r.figures["payment"], r.figures["fund_payment"]) == (
        Decimal("2.5000"), Decimal("25000.00"), Decimal("23500.00"))
    assert r.event.payment == Decimal("25000.00") and r.event.breakdown == r.breakdown
    assert r.price is not None and price_from_dict(r.breakdown) == r.price


def test_no_policy_in_force_and_a_withdrawn_list_are_not_priced() -> None:
    elsewhere = price_grouped("H3-S1", grouped(region="R9"), POLICIES, NO_DIP)
    assert (elsewhere.status, elsewhere.method, elsewhere.figures, elsewhere.breakdown) == (
        "NO_POLICY", None, {}, {})
    withdrawn = price_grouped("H3-S1", grouped(withdrawn=True), POLICIES, NO_DIP)
    assert (withdrawn.status, withdrawn.price, withdrawn.event.status) == ("WITHDRAWN", None, "WITHDRAWN")
