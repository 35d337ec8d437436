"""Pricing a grouped case (the decision the pricer's consumer applies to every `case-grouped`):
the DRG policy of the treatment region in force on the discharge date, the status, and the
figures the stored row and `case-priced` share."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from datetime import date
from decimal import Decimal

import pytest
from pricer_testkit import make_policy

from services.pricer.domain.grouped import case_to_price, price_from_dict, price_grouped
from services.pricer.domain.pricing import CaseToPrice, Price
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


def test_the_pricing_input_is_the_model_constructed_field_for_field() -> None:
    case = case_to_price("H3-S1", grouped(fees={"01": "12.3", "02": "0", "03": "7.005"}, total_cost="1.235"))
    values = dict(case.__dict__)
    built = CaseToPrice.model_construct(**values)
    assert list(case.__dict__) == list(CaseToPrice.model_fields) == list(built.__dict__)
    assert case == built and case.model_fields_set == built.model_fields_set
    assert (case.model_extra, case.__pydantic_private__) == (built.model_extra, built.__pydantic_private__)
    assert case.model_dump_json() == built.model_dump_json()
    # rounded to the fen half up, as `Amount` does
    assert case.fees == {"01": Decimal("12.30"), "02": Decimal("0.00"), "03": Decimal("7.01")}
    assert str(case.total_cost) == "1.24" and case == CaseToPrice.model_validate(case.model_dump())


def test_a_price_made_by_of_is_the_dataclass_instance() -> None:
    p = price_grouped("H3-S1", grouped(), POLICIES, NO_DIP).price
    assert p is not None
    values = {f.name: getattr(p, f.name) for f in fields(Price)}
    assert Price.of(**values) == Price(**values) == p
    assert list(Price.of(**values).__dict__) == [f.name for f in fields(Price)]
    short = {k: v for k, v in values.items() if k not in ("rw", "notes", "points")}
    assert Price.of(**short) == Price(**short) and list(Price.of(**short).__dict__) == list(values)
    with pytest.raises(TypeError, match="policy_id"):
        Price.of(**{k: v for k, v in values.items() if k != "policy_id"})
    with pytest.raises(FrozenInstanceError):
        p.payment = Decimal(0)  # type: ignore[misc]
