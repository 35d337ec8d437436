"""Small helpers shared by the pipeline tests (factories, waiting, counting)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from paths import REPO, SHARED  # noqa: F401  (tests import them from here too)
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

STAGE_TABLES = {"ingest": "ingest_lists", "grouper": "grouper_results", "pricer": "pricer_results",
                "review": "review_results"}


def cases_file(scheme: str = "chs-drg-1.1") -> Path:
    return SHARED / "testdata" / f"{scheme}-cases.jsonl"


HOSPITALS = ["H35050001", "H35050002", "H35050003", "H35050004", "H35050005", "H35050006"]


def settlement_lists(cases_file: Path, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Turn reference test cases into settlement lists; some people come back within days."""
    rng = random.Random(seed)
    lists: list[dict[str, Any]] = []
    with cases_file.open("rb") as fh:
        for i, line in enumerate(fh):
            if i >= n:
                break
            c = orjson.loads(line)
            discharge = date(2024, 1, 1) + timedelta(days=rng.randrange(360))
            los = c.get("los") if isinstance(c.get("los"), int) and c["los"] >= 0 else 3
            person = f"P{rng.randrange(max(n // 3, 1)):06d}"  # a third as many people as lists
            lists.append({
                "hospital_code": HOSPITALS[int(person[1:]) % len(HOSPITALS)],
                "setl_id": f"S{i:07d}", "psn_no": person,
                "sex": c["sex"] if c["sex"] in (0, 1, 2, 9) else 9,
                "age": c["age"], "age_days": c["age_days"], "birth_weight": c["birth_weight"],
                "dept": c.get("dept"), "los": los, "leaving_type": c.get("leaving_type"),
                "admission_date": (discharge - timedelta(days=los)).isoformat(),
                "discharge_date": discharge.isoformat(),
                "diagnoses": c["diagnoses"] or ["R69.x00"], "procedures": c["procedures"],
                "insurance_type": rng.choice(["310", "390"]),
            })
    return lists


def national_list(sl: dict[str, Any]) -> dict[str, Any]:
    """A list in the simple form above as the national 4101 `input` node (reduced: no fees)."""
    adm, dscg = sl["admission_date"], sl["discharge_date"]
    age = sl.get("age")
    born = date.fromisoformat(adm) - timedelta(days=int(sl.get("age_days") or (age or 0) * 365.25))
    setlinfo: dict[str, Any] = {
        "mdtrt_id": f"M{sl['setl_id']}", "setl_id": sl["setl_id"], "psn_no": sl["psn_no"],
        "medcasno": f"BA{sl['setl_id']}", "fixmedins_code": sl["hospital_code"],
        "fixmedins_name": f"示例医院{sl['hospital_code'][-2:]}", "psn_name": f"患者{sl['psn_no'][-6:]}",
        "gend": str(sl["sex"]), "brdy": born.isoformat(), "age": "" if age is None else str(age),
        "hi_type": sl.get("insurance_type") or "390", "insuplc": sl.get("region", "350500"),
        "ipt_med_type": "1", "adm_time": f"{adm} 09:00:00", "adm_caty": sl.get("dept") or "A03",
        "dscg_time": f"{dscg} 10:00:00", "dscg_caty": sl.get("dept") or "A03",
        "act_ipt_days": str(sl.get("los") or 0),
        "dscg_way": str(sl["leaving_type"] if sl.get("leaving_type") in (1, 2, 3, 4, 5) else 9),
        "setl_begn_date": adm, "setl_end_date": dscg, "hi_paymtd": "1",
    }
    if age == 0:
        setlinfo["nwb_age"] = "" if sl.get("age_days") is None else str(sl["age_days"])
        setlinfo["nwb_bir_wt"] = "" if sl.get("birth_weight") is None else str(sl["birth_weight"])
    return {
        "setlinfo": setlinfo,
        "diseinfo": [{"diag_type": "1", "diag_code": c, "maindiag_flag": "1" if i == 0 else "0"}
                     for i, c in enumerate(sl["diagnoses"])],
        "oprninfo": [{"oprn_oprt_type": "1" if i == 0 else "2", "oprn_oprt_code": c}
                     for i, c in enumerate(sl["procedures"])],
    }


def simple_lists(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` lists in the demo's simple form, built from the reference cases, that pass intake QC."""
    from services.ingest.domain import intake

    out: list[dict[str, Any]] = []
    size = n
    while len(out) < n:
        size *= 2
        out = [sl for sl in settlement_lists(cases_file(), size, seed)
               if isinstance(intake.evaluate("native", national_list(sl), caller_hospital=None,
                                           dictionaries=None), intake.Accepted)]
    return out[:n]


def lists(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` valid settlement lists (the national `input` node) built from the reference cases."""
    return [national_list(sl) for sl in simple_lists(n, seed)]


def case_id(national: dict[str, Any]) -> str:
    s = national["setlinfo"]
    return f"{s['fixmedins_code']}-{s['setl_id']}"


def policy(weight: str = "1.0000") -> dict[str, Any]:
    """A rate-method policy pricing every 1.1 DRG at `weight`, 10000.00 per RW, coefficient 1.0.

    The demo hospitals are registered (level 3; every level's coefficient is 1.0), others get
    `no_rate`. No group mean costs: every grouped case is `normal`, its payment 10000.00 × weight.
    """
    import orjson

    drgs = orjson.loads((SHARED / "schemes" / "chs-drg-1.1" / "drg.json").read_bytes())["drgs"]
    return {"format": "drgdip.pricing-policy/1", "policy_id": "test-2024", "version": 1,
            "region": "350500", "valid_from": "2024-01-01", "valid_to": None, "method": "rate",
            "scheme_id": "chs-drg-1.1",
            "weights": {"version": "test-w1", "table": {d["code"]: weight for d in drgs}},
            "rates": {"default": {"default": "10000.00"}},
            "hospitals": {"level_coefficients": {"1": "1.0", "2": "1.0", "3": "1.0"},
                          "levels": {h: 3 for h in HOSPITALS}}}


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


async def count(engine: AsyncEngine, table: str, where: str = "") -> int:
    async with engine.connect() as conn:
        q = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(await conn.scalar(text(q)) or 0)


async def stage_counts(engine: AsyncEngine) -> dict[str, int]:
    return {stage: await count(engine, table) for stage, table in STAGE_TABLES.items()}


async def distinct_cases(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count(text("DISTINCT case_id"))).select_from(text(table))) or 0)


async def bearer(engine: AsyncEngine, role: str = "bureau-admin", hospital: str | None = None) -> dict[str, str]:
    """Authorization headers with a fresh token (the gateway's tables must exist)."""
    from services.gateway.repository import create_token

    async with engine.begin() as conn:
        _id, token = await create_token(conn, role, hospital)
    return {"authorization": f"Bearer {token}"}


async def api_client(runtime: Any, role: str = "bureau-admin", hospital: str | None = None) -> Any:
    """An in-process HTTP client of a started runtime, authenticated with a fresh token."""
    import httpx

    headers = await bearer(runtime.engine, role, hospital)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test",
                             headers=headers)


def internal_client(runtime: Any) -> Any:
    """An in-process HTTP client of an embedded runtime's internal routes (the stages' own, which
    only the gateway reaches: they are not served)."""
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.internal), base_url="http://internal")


async def receive_and_price(runtime: Any, n: int) -> list[dict[str, Any]]:
    """`n` lists handed straight to a started embedded runtime's ingest, once the pipeline has
    priced them all (under whatever policy is in force, or none)."""
    from services.ingest.domain.intake import Received

    sent = lists(n)
    intake = next(s for s in runtime.stages if s.name == "ingest").service
    outcomes = await intake.receive([Received("native", orjson.dumps(sl)) for sl in sent])
    assert all(o.status == "accepted" for o in outcomes)

    async def priced() -> bool:
        return await count(runtime.engine, "pricer_results") == n

    await wait_until(priced, 120, f"{n} lists priced")
    return sent
