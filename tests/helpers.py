"""Small helpers shared by the pipeline tests (factories, waiting, counting)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")).resolve()
STAGE_TABLES = {"ingest": "ingest_lists", "grouper": "grouper_results", "pricer": "pricer_results",
                "review": "review_results"}


def cases_file(scheme: str = "chs-drg-1.1") -> Path:
    return SHARED / "testdata" / f"{scheme}-cases.jsonl"


def simple_lists(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` lists in the demo's simple form, built from the reference cases, that pass intake QC."""
    from drgdip.demo import national_list, settlement_lists
    from services.ingest import core

    out: list[dict[str, Any]] = []
    size = n
    while len(out) < n:
        size *= 2
        out = [sl for sl in settlement_lists(cases_file(), size, seed)
               if isinstance(core.evaluate("native", national_list(sl), caller_hospital=None,
                                           dictionaries=None), core.Accepted)]
    return out[:n]


def lists(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` valid settlement lists (the national `input` node) built from the reference cases."""
    from drgdip.demo import national_list

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

    from drgdip.demo import HOSPITALS

    drgs = orjson.loads((SHARED / "schemes" / "chs-drg-1.1" / "drg.json").read_bytes())["drgs"]
    return {"format": "drgdip.pricing-policy/1", "policy_id": "test-2024", "version": 1,
            "region": "default", "valid_from": "2024-01-01", "valid_to": None, "method": "rate",
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
    from services.gateway.auth import create_token

    _id, token = await create_token(engine, role, hospital)
    return {"authorization": f"Bearer {token}"}


async def api_client(runtime: Any, role: str = "bureau-admin", hospital: str | None = None) -> Any:
    """An in-process HTTP client of a started runtime, authenticated with a fresh token."""
    import httpx

    headers = await bearer(runtime.engine, role, hospital)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test",
                             headers=headers)
