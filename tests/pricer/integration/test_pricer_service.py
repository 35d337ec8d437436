"""The pricer service on the payment core, embedded mode: pricing, policy versions, settlement."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import HOSPITALS, SHARED, api_client, count, internal_client, lists, policy, wait_until
from sqlalchemy import select

from drgdip.stages import build_runtime
from services.pricer.domain.policy import PolicyError
from services.pricer.domain.settlement import SettlementError
from services.pricer.handlers import (
    import_policy,
    record_advance,
    run_annual_clearing,
    run_monthly_presettlement,
)
from services.pricer.repository import results

H1, H2 = HOSPITALS[0], HOSPITALS[1]


async def in_transaction(engine: Any, work: Any, *args: Any, **kwargs: Any) -> Any:
    """`work(conn, ...)` in one transaction, as a command runs it."""
    async with engine.begin() as conn:
        return await work(conn, *args, **kwargs)


def outlier_policy(version: int = 1) -> dict[str, Any]:
    """policy() with a 3000.00 mean cost for every DRG: RW 1 → k_high 3, high above 9000.00."""
    doc = policy()
    return doc | {"version": version,
                  "group_mean_costs": {drg: "3000.00" for drg in doc["weights"]["table"]}}


def settlement_list(i: int, *, hospital: str, cost: str, patient_share: str,
                    discharge: str = "2024-03-15") -> dict[str, Any]:
    """Reference list `i` moved to `hospital`, discharged on `discharge`, with its money."""
    sl = copy.deepcopy(lists(i + 1)[i])
    s = sl["setlinfo"]
    out = date.fromisoformat(discharge)
    admitted = out - timedelta(days=int(s["act_ipt_days"]))
    shift = admitted - date.fromisoformat(s["adm_time"][:10])  # keeps the age on admission
    s.update(brdy=str(date.fromisoformat(s["brdy"]) + shift), fixmedins_code=hospital, setl_id=f"T{i:04d}", medfee_sumamt=cost,
             psn_selfpay=patient_share, psn_ownpay="0.00",
             adm_time=f"{admitted} 09:00:00", dscg_time=f"{out} 10:00:00",
             setl_begn_date=str(admitted), setl_end_date=str(out))
    return sl


def case_id(sl: dict[str, Any]) -> str:
    return f"{sl['setlinfo']['fixmedins_code']}-{sl['setlinfo']['setl_id']}"


@pytest.fixture
async def start(tmp_path: Path):
    runtimes: list[Any] = []

    async def run(doc: dict[str, Any]):  # type: ignore[no-untyped-def]
        policy_file = tmp_path / "policy.json"
        policy_file.write_bytes(orjson.dumps(doc))
        rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                           schemes_dir=SHARED / "schemes", policy_file=policy_file,
                           log_level="WARNING")
        await rt.start()
        runtimes.append(rt)
        client = await api_client(rt)
        runtimes.append(client)
        return rt, client

    yield run
    for r in reversed(runtimes):
        await (r.aclose() if hasattr(r, "aclose") else r.stop())


async def submit_and_wait(rt: Any, client: Any, batch: list[dict[str, Any]]) -> None:
    before = await count(rt.engine, "pricer_results")
    for sl in batch:
        r = await client.post("/api/v1/settlement-lists", json=sl)
        assert r.status_code == 202, r.text

    async def priced() -> bool:
        return await count(rt.engine, "pricer_results") == before + len(batch)

    await wait_until(priced, 60, f"{len(batch)} priced cases")


async def priced_rows(rt: Any, cid: str) -> list[Any]:
    async with rt.engine.connect() as conn:
        return list((await conn.execute(
            select(results).where(results.c.case_id == cid).order_by(results.c.id))).all())


async def test_a_case_is_priced_with_the_full_breakdown_and_the_versions(start) -> None:
    rt, client = await start(policy())
    sl = settlement_list(0, hospital=H1, cost="12000.00", patient_share="1500.00")
    await submit_and_wait(rt, client, [sl])

    async def reached_gateway() -> bool:
        return (await client.get(f"/api/v1/cases/{case_id(sl)}")).json().get("priced") is not None

    await wait_until(reached_gateway, 30, "the priced case in the read model")
    case = (await client.get(f"/api/v1/cases/{case_id(sl)}")).json()
    assert case["grouped"]["status"] == "SUCCESS"
    priced = case["priced"]
    assert (priced["status"], priced["case_type"]) == ("PRICED", "normal")
    assert Decimal(priced["payment_standard"]) == Decimal("10000.00")
    assert Decimal(priced["payment"]) == Decimal("10000.00")
    assert Decimal(priced["fund_payment"]) == Decimal("8500.00")  # payment − patient share
    b = priced["breakdown"]
    assert (b["policy_id"], b["policy_version"], b["weights_version"]) == ("test-2024", 1, "test-w1")
    assert (b["rw"], b["base_rate"], b["coefficient"], b["hospital_level"]) == (
        "1.0000", "10000.00", "1.0", 3)
    assert b["total_cost"] == "12000.00" and b["patient_share"] == "1500.00"

    [row] = await priced_rows(rt, case_id(sl))
    assert (row.policy_id, row.policy_version, row.weights_version) == ("test-2024", 1, "test-w1")
    assert (row.case_type, row.payment, row.fund_payment) == (
        "normal", Decimal("10000.00"), Decimal("8500.00"))
    assert orjson.loads(row.breakdown) == b


async def test_a_high_outlier_is_typed_and_paid_the_extra(start) -> None:
    rt, client = await start(outlier_policy())
    sl = settlement_list(0, hospital=H1, cost="12000.00", patient_share="1500.00")
    await submit_and_wait(rt, client, [sl])
    [row] = await priced_rows(rt, case_id(sl))
    b = orjson.loads(row.breakdown)
    # §7: RW 1.0 → k_high 3, threshold 3 × 3000.00 = 9000.00 < 12000.00;
    # extra = (12000.00 − 9000.00) × 0.9 = 2700.00; payment = 10000.00 + 2700.00
    assert (row.status, row.case_type) == ("PRICED", "high_outlier")
    assert (b["group_mean_cost"], b["high_threshold"], b["outlier_extra"]) == (
        "3000.00", "9000.00", "2700.00")
    assert (row.payment_standard, row.payment, row.fund_payment) == (
        Decimal("10000.00"), Decimal("12700.00"), Decimal("11200.00"))


async def test_a_new_policy_version_prices_later_cases_and_keeps_the_old_rows(start) -> None:
    rt, client = await start(policy())
    first = settlement_list(0, hospital=H1, cost="12000.00", patient_share="0.00")
    await submit_and_wait(rt, client, [first])

    pricer = internal_client(rt)  # the pricer's own routes, as the gateway reaches them
    r = await pricer.post("/policies", json=outlier_policy(version=2),
                          headers={"x-drgdip-actor": "bureau-admin:alice"})
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["stored"]) == (2, True)
    again = await pricer.post("/policies", json=outlier_policy(version=2))
    assert again.status_code == 200 and again.json()["stored"] is False  # same content: no-op
    changed = outlier_policy(version=2) | {"notes": "edited in place"}
    conflict = await pricer.post("/policies", json=changed)
    assert conflict.status_code == 409 and conflict.json()["error"]["field"] == "version"

    later = settlement_list(1, hospital=H1, cost="12000.00", patient_share="0.00")
    resubmitted = copy.deepcopy(first)
    resubmitted["setlinfo"]["medfee_sumamt"] = "12500.00"  # a new list version of the first case
    await submit_and_wait(rt, client, [later, resubmitted])

    old, new = await priced_rows(rt, case_id(first))
    assert (old.policy_version, old.case_type, old.payment) == (1, "normal", Decimal("10000.00"))
    assert (new.list_version, new.policy_version, new.case_type) == (2, 2, "high_outlier")
    [row] = await priced_rows(rt, case_id(later))
    assert (row.policy_version, row.case_type) == (2, "high_outlier")

    listed = (await pricer.get("/policies")).json()["policies"]
    await pricer.aclose()
    assert [(p["version"], p["imported_by"]) for p in listed] == [
        (1, "settings"), (2, "bureau-admin:alice")]
    assert await count(rt.engine, "pricer_policy_audit") == 2


async def test_a_bad_policy_is_rejected_with_the_field_and_nothing_is_stored(start) -> None:
    rt, client = await start(policy())
    bad = policy() | {"version": 2}
    bad["weights"] = {"version": "w2", "table": {"AB11": 1.5}}  # a JSON float, not "1.5000"
    client = internal_client(rt)  # the pricer's own route, as the gateway reaches it
    r = await client.post("/policies", json=bad)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "INVALID_POLICY"
    assert r.json()["error"]["field"] == "weights.table.AB11"

    missing = {k: v for k, v in policy().items() if k != "method"} | {"version": 3}
    r = await client.post("/policies", json=missing)
    assert r.status_code == 422 and r.json()["error"]["field"] == "method"
    r = await client.post("/policies", content=b"{not json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_POLICY"
    await client.aclose()

    with pytest.raises(PolicyError) as e:  # what `drgdip policy import` calls
        await in_transaction(rt.engine, import_policy, orjson.dumps(bad))
    assert e.value.path == "weights.table.AB11"
    assert await count(rt.engine, "pricer_policy_versions") == 1
    assert await count(rt.engine, "pricer_policy_audit") == 1


async def test_monthly_presettlement_and_annual_clearing_store_new_versions(start) -> None:
    rt, client = await start(policy())
    await submit_and_wait(rt, client, [
        settlement_list(0, hospital=H1, cost="12000.00", patient_share="1500.00"),
        settlement_list(1, hospital=H2, cost="8000.00", patient_share="1000.00"),
        settlement_list(2, hospital=H2, cost="9000.00", patient_share="500.00"),
        settlement_list(3, hospital=H2, cost="9000.00", patient_share="500.00",
                        discharge="2024-04-02"),  # another month
    ])

    march = await in_transaction(rt.engine, run_monthly_presettlement, "test-2024", "2024-03")
    by_hospital = {s.hospital_code: s for s in march}
    assert set(by_hospital) == {H1, H2} and {s.version for s in march} == {1}
    # H1: fund due 10000.00 − 1500.00 = 8500.00, 95 % = 8075.00, less the quality deposit
    # (5 %: 403.75) = 7671.25 pre-settled
    assert by_hospital[H1].amount("quality_deposit") == Decimal("403.75")
    assert by_hospital[H1].amount("presettled") == Decimal("7671.25")
    # H2: 2 × 10000.00 − 1500.00 = 18500.00 × 0.95 = 17575.00, less 878.75
    assert by_hospital[H2].amount("presettled") == Decimal("16696.25")
    rerun = await in_transaction(rt.engine, run_monthly_presettlement, "test-2024", "2024-03")
    assert {s.version for s in rerun} == {2}

    clearing = await in_transaction(rt.engine, run_annual_clearing, "test-2024", "2024", Decimal("100000.00"))
    h1 = next(h for h in clearing.hospitals if h.hospital_code == H1)
    # rate method: A = 10000.00, C = 12000.00 → overspend 2000.00; the first 10 % of A
    # (1000.00) shared 50 % = 500.00 from the reserve (5 % of 100000.00 = 5000.00);
    # cleared 10500.00, fund 9000.00, minus 7671.25 pre-settled (the latest March version); the
    # 403.75 deposit is returned in full (no evaluation adopted)
    assert (h1.overspend, h1.shared, h1.cleared) == (
        Decimal("2000.00"), Decimal("500.00"), Decimal("10500.00"))
    assert (h1.fund_amount, h1.presettled, h1.balance) == (
        Decimal("9000.00"), Decimal("7671.25"), Decimal("1328.75"))
    assert (h1.quality_deposit_withheld, h1.quality_deposit_returned) == (Decimal("403.75"), Decimal("403.75"))
    assert clearing.version == 1
    assert (await in_transaction(rt.engine, run_annual_clearing, "test-2024", "2024", Decimal("100000.00"))).version == 2

    pricer = internal_client(rt)
    r = await pricer.get("/statements", params={"hospital": H1, "period": "2024-03"})
    assert [(s["kind"], s["version"]) for s in r.json()["statements"]] == [
        ("monthly", 1), ("monthly", 2)]
    annual = (await pricer.get("/statements", params={"hospital": H1, "period": "2024"})).json()
    await pricer.aclose()
    docs = [s["document"] for s in annual["statements"]]
    assert [d["version"] for d in docs] == [1, 2]
    assert docs[0]["lines"]["balance"] == "1328.75" and docs[0]["clearing"]["budget"] == "100000.00"
    assert all((s["policy_id"], s["policy_version"], s["weights_version"]) == ("test-2024", 1, "test-w1")
               for s in annual["statements"])
    assert await count(rt.engine, "pricer_statements") == 2 * 2 + 2 * 2  # 2 hospitals × 2 runs × 2

    # a prepayment advance (预付金) of 600.00 to H1 is netted: 1328.75 − 600.00 = 728.75
    await in_transaction(rt.engine, record_advance, H1, "2024", Decimal("600.00"), who="test")
    third = await in_transaction(rt.engine, run_annual_clearing, "test-2024", "2024", Decimal("100000.00"))
    h1 = next(h for h in third.hospitals if h.hospital_code == H1)
    assert (third.version, h1.advances, h1.balance) == (3, Decimal("600.00"), Decimal("728.75"))
    with pytest.raises(SettlementError, match="amount"):
        await in_transaction(rt.engine, record_advance, H1, "2024", Decimal("-1.00"))


async def test_an_offsite_case_is_priced_by_the_treatment_regions_policy(start) -> None:
    from shared.bus import Record
    from shared.events import CASE_GROUPED, CaseFacts, CaseGrouped, Envelope

    rt, _client = await start(policy())  # region "350500"
    facts = CaseFacts(hospital_code=H1, setl_id="OFF1", region="440100", psn_key="k",
                      treatment_region="350500", discharge_date=date(2024, 5, 2),
                      total_cost=Decimal("9000.00"), insurance_type="310")
    home = facts.model_copy(update={"setl_id": "HOME1", "treatment_region": None})
    for f in (facts, home):
        grouped = CaseGrouped(facts=f, scheme_id="chs-drg-1.1", mdc="MDCF", adrg="FM1",
                              drg="FM19", status="SUCCESS")
        env = Envelope.new(grouped, case_id=f"{H1}-{f.setl_id}", correlation_id="c", producer="test")
        await rt.bus.publish([Record(CASE_GROUPED, env.case_id, env.to_bytes())])

    async def priced() -> bool:
        return await count(rt.engine, "pricer_results") == 2

    await wait_until(priced, 30, "two priced cases")
    [offsite] = await priced_rows(rt, f"{H1}-OFF1")
    assert (offsite.status, offsite.policy_id, offsite.treatment_region) == ("PRICED", "test-2024", "350500")
    assert orjson.loads(offsite.breakdown)["offsite"] is True
    [unknown] = await priced_rows(rt, f"{H1}-HOME1")  # insured and treated in 440100: no policy
    assert (unknown.status, unknown.policy_id, unknown.breakdown) == ("NO_POLICY", None, None)


async def test_settle_and_advance_from_the_command_line(start, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from typer.testing import CliRunner

    from drgdip.cli import app

    rt, client = await start(policy())
    await submit_and_wait(rt, client, [settlement_list(0, hospital=H1, cost="12000.00", patient_share="1500.00")])
    db = rt.settings.db

    def run(*args: str):  # type: ignore[no-untyped-def]
        return asyncio.to_thread(CliRunner().invoke, app, [*args, "--db", db])

    monthly = await run("settle", "--policy-id", "test-2024", "--period", "2024-03", "--csv", str(tmp_path / "m.csv"))
    assert monthly.exit_code == 0, monthly.output
    assert "7,671.25" in monthly.output  # (10000.00 − 1500.00) × 95 % less the 5 % deposit
    assert "presettled,7671.25" in (tmp_path / "m.csv").read_text()
    assert (await run("advance", "--hospital", H1, "--year", "2024", "--amount", "100.00")).exit_code == 0
    annual = await run("settle", "--policy-id", "test-2024", "--period", "2024", "--budget", "100000.00")
    assert annual.exit_code == 0, annual.output
    assert "228.75" in annual.output  # 1328.75 as in the test above, less the 100.00 advance
    assert (await run("settle", "--policy-id", "test-2024", "--period", "2024")).exit_code != 0  # no budget
