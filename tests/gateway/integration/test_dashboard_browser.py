"""The web dashboard in a real browser: Debian's headless Chromium driven by Playwright against an
embedded gateway served on a loopback port, with a region's lists run through the pipeline.

Screenshots are written to $DRGDIP_TEST_ARTEFACTS (default: the system's temporary folder,
drgdip-dashboard/). Skipped, saying so, only where Chromium or Playwright is not installed
(`make test` installs both)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from helpers import SHARED, api_client, national_list, policy, simple_lists, wait_until

from drgdip.stages import build_runtime

CHROMIUM = os.environ.get("DRGDIP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTEFACTS = Path(os.environ.get("DRGDIP_TEST_ARTEFACTS", Path(tempfile.gettempdir()) / "drgdip-dashboard"))
LISTS = 60
OWN = "H35050004"  # the hospital signed in as (it has the split admission)

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the test extras install it
    async_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="Playwright for Python is not installed: "
                       "pip install -e '.[test]'"),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (make test does)"),
    pytest.mark.asyncio(loop_scope="module"),
]


@dataclass
class Site:
    base: str
    tokens: dict[str, str]
    flagged_case: str
    browser: Browser
    api: Any  # a bearer-token client (the same API the pages read)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _region_lists() -> list[dict[str, Any]]:
    """The reference lists plus one split admission (the same person back 3 days later into the
    same ADRG), so that review flags a case."""
    base = simple_lists(LISTS)
    first = next(sl for sl in base if sl["hospital_code"] == OWN)
    back = date.fromisoformat(first["discharge_date"]) + timedelta(days=3)
    again = first | {"setl_id": "S9000001", "admission_date": back.isoformat(),
                     "discharge_date": (back + timedelta(days=first["los"])).isoformat()}
    return [national_list(sl) for sl in [*base, again]]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:


    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "policy.json").write_bytes(orjson.dumps(policy()))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp / 'd.db'}", schemes_dir=SHARED / "schemes",
                       policy_file=tmp / "policy.json", log_level="WARNING")
    await rt.start()
    client = await api_client(rt)
    try:
        sent = _region_lists()
        for sl in sent:
            assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

        async def reviewed() -> bool:
            return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == len(sent)

        await wait_until(reviewed, 120, "every list reviewed")
        flagged = (await client.get("/api/v1/cases", params={"flagged": "true"})).json()["cases"]
        assert flagged, "the split admission was not flagged"
        async with serve_site(rt, client, flagged[0]["case_id"]) as site:
            yield site
    finally:
        await client.aclose()
        await rt.stop()


@asynccontextmanager
async def serve_site(rt: Any, api: Any, case_id: str) -> AsyncIterator[Site]:
    """The runtime's gateway served on a loopback port with a bureau-analyst and an own-hospital
    token, and a headless Chromium to open it."""
    import uvicorn

    from services.gateway.repository import create_token

    tokens = {}
    async with rt.engine.begin() as conn:
        tokens["bureau"] = (await create_token(conn, "bureau-analyst"))[1]
        tokens["hospital"] = (await create_token(conn, "hospital", OWN))[1]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(rt.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                yield Site(f"http://127.0.0.1:{port}", tokens, case_id, browser, api)
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await serving


async def _signed_in(site: Site, who: str) -> Page:
    page = await site.browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{site.base}/dashboard/")
    await page.fill("#token", site.tokens[who])
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#who-text:not(:empty)")
    await page.wait_for_function("() => document.querySelector('#period').value !== ''")  # the default period is set
    return page


async def _shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


async def _no_token_kept(page: Page, site: Site) -> None:
    assert all(t not in page.url for t in site.tokens.values())
    stored = await page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert all(t not in stored for t in site.tokens.values())
    assert await page.evaluate("() => document.cookie") == ""  # HttpOnly: the page cannot read it


async def test_bureau_sees_the_overview_with_a_chart_of_the_api_numbers(site: Site) -> None:
    page = await _signed_in(site, "bureau")
    assert await page.text_content("#who-text") == "医保局分析员"
    await page.wait_for_selector(".kpi")
    summary = (await site.api.get("/api/v1/summary")).json()
    chart = page.locator('[data-chart="病例处理状态"]')
    await page.wait_for_selector('[data-chart="病例处理状态"][data-rendered="true"]')
    assert await chart.locator("svg path").count() > len(summary["by_status"])  # axes and bars drawn
    assert orjson.loads(await chart.get_attribute("data-values") or "null") == [list(summary["by_status"].values())]
    period = await page.input_value("#period")
    total = (await site.api.get("/api/v1/indicators", params={"period": period})).json()["region_total"]
    assert total["cases"] > 0
    assert await page.text_content('[data-kpi="出院病例数"] .value') == f"{total['cases']:,}"
    await _shot(page, "overview-bureau")

    await page.click('#nav a[data-page="trend"]')
    await page.wait_for_selector('[data-chart="月度出院病例数"][data-rendered="true"]')
    months = (await site.api.get("/api/v1/indicators", params={"period": period[:4], "by": "month"})).json()["rows"]
    drawn = orjson.loads(await page.get_attribute('[data-chart="月度出院病例数"]', "data-values") or "null")
    assert drawn == [[r["cases"] for r in sorted(months, key=lambda r: r["key"])]]
    await _shot(page, "trend-bureau")

    await page.click('#nav a[data-page="groups"]')
    bubble = '[data-chart^="病组气泡图"]'
    await page.wait_for_selector(f'{bubble}[data-rendered="true"]')
    groups = (await site.api.get("/api/v1/indicators", params={"period": period, "by": "group"})).json()["rows"]
    points = orjson.loads(await page.get_attribute(bubble, "data-values") or "null")
    assert sorted(p[3] for p in points) == sorted(r["key"] for r in groups if r["cases"])
    await _shot(page, "groups-bureau")

    await page.click('#nav a[data-page="compare"]')
    await page.wait_for_selector('[data-chart^="三级医院"][data-rendered="true"]')
    await _shot(page, "compare-bureau")

    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["drgdip_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["value"] not in site.tokens.values()
    await _no_token_kept(page, site)
    await page.close()


async def test_bureau_drills_down_from_the_region_to_a_case_with_its_trace_price_and_flags(site: Site) -> None:
    page = await _signed_in(site, "bureau")
    await page.click('#nav a[data-page="drill"]')
    await page.click(f'main a[href="#/drill/{OWN}"]')
    case_link = page.locator(f'main a[href="#/case/{site.flagged_case}"]')
    await case_link.wait_for()
    case = (await site.api.get(f"/api/v1/cases/{site.flagged_case}")).json()
    group = case["grouped"]["drg"]
    await page.goto(f"{site.base}/dashboard/#/drill/{OWN}/{group}")  # the group level
    await page.locator(f'main a[href="#/case/{site.flagged_case}"]').click()
    await page.wait_for_selector("#trace")
    trace = await page.text_content("#trace") or ""
    assert all(case["grouped"][k] in trace for k in ("mdc", "adrg", "drg"))
    # the full trace, recomputed by the grouper, line by line as the API gives it
    grouping = (await site.api.get(f"/api/v1/cases/{site.flagged_case}/grouping")).json()
    assert grouping["drg"] == group and grouping["explanation"]
    await page.wait_for_selector("#grouping-explanation li")
    assert await page.locator("#grouping-explanation li").all_text_contents() == grouping["explanation"]
    price = await page.text_content("#price") or ""
    assert case["priced"]["breakdown"]["payment_standard"] in price and "支付标准" in price
    flags = await page.text_content("#case-flags") or ""
    assert "SPLIT_ADMISSION" in flags or "分解住院" in flags
    await _shot(page, "case-bureau")
    await page.click('#nav a[data-page="flags"]')
    await page.wait_for_selector(f'main a[href="#/case/{site.flagged_case}"]')
    await _shot(page, "flags-bureau")
    await page.close()


async def test_bureau_sees_budget_execution_and_flags_by_rule_with_the_api_numbers(site: Site) -> None:
    page = await _signed_in(site, "bureau")
    year = (await page.input_value("#period"))[:4]
    months = (await site.api.get("/api/v1/indicators", params={"period": year, "by": "month"})).json()["rows"]
    for month in sorted(r["key"] for r in months):  # the bureau pre-settles the months of the region's cases
        run = await site.api.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": month})
        assert run.status_code == 201, run.text
    region = (await site.api.get("/api/v1/indicators", params={"period": year, "by": "region"})).json()["rows"][0]["key"]
    budget = (await site.api.get("/api/v1/indicators/budget", params={"region": region, "year": year})).json()
    assert budget["months"]
    await page.fill("#period", year)  # the whole year
    await page.press("#period", "Enter")
    await page.click('#nav a[data-page="budget"]')
    chart = f'[data-chart="{region} · 每月预结算与基金应付（元）"]'
    await page.wait_for_selector(f'{chart}[data-rendered="true"]')
    assert await page.locator(f"{chart} svg path").count() > len(budget["months"])
    drawn = orjson.loads(await page.get_attribute(chart, "data-values") or "null")
    assert drawn["months"] == [m["period"] for m in budget["months"]]
    assert drawn["presettled"] == [float(m["presettled"]) for m in budget["months"]]
    assert drawn["fund_due"] == [float(m["fund_due"]) for m in budget["months"]]
    await _shot(page, "budget-bureau")

    await page.click('#nav a[data-page="flags"]')
    rules = (await site.api.get("/api/v1/indicators", params={"period": year, "by": "rule"})).json()["rows"]
    assert rules, "the split admission is a flagged case of the year"
    chart = f'[data-chart="{year} 各规则疑点病例数"]'
    await page.wait_for_selector(f'{chart}[data-rendered="true"]')
    drawn = orjson.loads(await page.get_attribute(chart, "data-values") or "null")
    assert drawn == [[r["flagged"] for r in sorted(rules, key=lambda r: r["key"])]]
    await _shot(page, "flags-by-rule-bureau")
    await page.close()


async def test_a_hospital_sees_only_its_own_hospital(site: Site) -> None:
    page = await _signed_in(site, "hospital")
    assert await page.text_content("#who-text") == f"医院 · {OWN}"
    assert await page.locator('#nav a[data-page="compare"]').is_hidden()
    assert await page.locator('#nav a[data-page="budget"]').is_hidden()  # budget execution: bureau roles
    await page.click('#nav a[data-page="drill"]')  # the region level leads to its own hospital
    await page.wait_for_selector("#cases a[href^='#/case/']")
    shown = await page.locator("#cases tbody tr td:nth-child(2)").all_text_contents()
    assert shown and set(shown) == {OWN}
    await page.click('#nav a[data-page="quality"]')
    await page.wait_for_selector('main h2:has-text("清单质量") ~ table')
    hospitals = await page.locator("main table tbody tr td:first-child").all_text_contents()
    assert hospitals and set(hospitals) == {OWN}
    other = (await site.api.get("/api/v1/cases", params={"hospital": "H35050001", "limit": 1})).json()["cases"][0]
    await page.goto(f"{site.base}/dashboard/#/case/{other['case_id']}")
    await page.wait_for_selector("main .error")
    assert "CASE_NOT_FOUND" in (await page.text_content("main") or "")
    # nor its grouping trace through the API with the same session
    r = await page.request.get(f"{site.base}/api/v1/cases/{other['case_id']}/grouping")
    assert r.status == 404 and (await r.json())["error"]["code"] == "CASE_NOT_FOUND"
    await _shot(page, "hospital-other-case")
    await _no_token_kept(page, site)
    await page.close()


async def test_sign_out_ends_the_session(site: Site) -> None:
    page = await _signed_in(site, "bureau")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "drgdip_session")
    await page.click("#sign-out")
    await page.wait_for_selector("#sign-in:not([hidden])")
    assert not [c for c in await page.context.cookies() if c["name"] == "drgdip_session"]
    # the old cookie is of no use any more
    r = await page.request.get(f"{site.base}/api/v1/summary",
                               headers={"cookie": f"drgdip_session={cookie['value']}"})
    assert r.status == 401
    await page.reload()
    await page.wait_for_selector("#sign-in:not([hidden])")
    await page.close()
