"""The dashboard's pages for evaluation, settlement timeliness, feedback, negotiation and reports,
in headless Chromium against an embedded gateway (the set-up of test_dashboard_browser.py).

What each page shows is seeded through the API: a quarter and a year evaluated (the year
adopted), a month declared by three hospitals and pre-settled (one of them had no case in it, so
stays pending), prepayments granted, opinions sent and answered, a weights draft published and
commented. Each page must show the API's numbers (charts' data-values, table cells), and a
hospital only its own rows. Screenshots go where test_dashboard_browser.py puts them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
import pytest_asyncio
from helpers import SHARED, api_client, policy, wait_until
from test_dashboard_browser import (
    OWN,
    Site,
    _region_lists,
    _shot,
    _signed_in,
    pytestmark,  # noqa: F401  (the same skips: no Chromium, no Playwright)
    serve_site,
)

from drgdip.stages import build_runtime

OTHER = "H35050002"  # another hospital with cases in MONTH
NO_CASES = "H35050005"  # declares MONTH without a case in it: pending
MONTH, YEAR, QUARTER = "2024-10", "2024", "2024Q4"
CST = timezone(timedelta(hours=8))


@dataclass
class Seeded:
    site: Site
    region: str
    draft_id: int
    drg: str  # the draft's changed weight
    own_comment: int


async def _hospital(rt: Any, code: str) -> Any:
    return await api_client(rt, "hospital", code)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Seeded]:

    from services.pricer.handlers import record_advance

    tmp = tmp_path_factory.mktemp("dashboard-pages")
    (tmp / "policy.json").write_bytes(orjson.dumps(policy()))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp / 'd.db'}", schemes_dir=SHARED / "schemes",
                       policy_file=tmp / "policy.json", log_level="WARNING")
    await rt.start()
    admin = await api_client(rt)
    own, other, no_cases = (await _hospital(rt, OWN), await _hospital(rt, OTHER), await _hospital(rt, NO_CASES))
    try:
        sent = _region_lists()
        for sl in sent:
            assert (await admin.post("/api/v1/settlement-lists", json=sl)).status_code == 202

        async def reviewed() -> bool:
            return (await admin.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == len(sent)

        await wait_until(reviewed, 120, "every list reviewed")
        region = (await admin.get("/api/v1/indicators", params={"period": YEAR, "by": "region"})).json()["rows"][0]["key"]

        # the month declared by three hospitals, then pre-settled (one had no case in it: pending)
        for client in (own, other, no_cases):
            r = await client.post("/api/v1/declarations", json={"period": MONTH})
            assert r.status_code == 201, r.text
        r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": MONTH})
        assert r.status_code == 201, r.text

        async def issued() -> bool:
            r = await admin.get("/api/v1/reports/feedback/issued", params={"hospital": OWN})
            return bool(r.json()["issued"])

        await wait_until(issued, 60, "the monthly feedback issued after the pre-settlement")
        async with rt.engine.begin() as conn:  # prepayments are granted by the bureau's command
            await record_advance(conn, OWN, YEAR, Decimal("500.00"), "test")
            await record_advance(conn, OTHER, YEAR, Decimal("300.00"), "test")

        # a quarter and the year evaluated, the year adopted
        for period in (QUARTER, YEAR):
            r = await admin.post("/api/v1/evaluations", json={"region": region, "period": period})
            assert r.status_code == 201, r.text
        r = await admin.post(f"/api/v1/evaluations/{r.json()['evaluation_id']}/adopt")
        assert r.status_code == 200, r.text

        # opinions: one of each hospital, the own one answered
        case = (await own.get("/api/v1/cases", params={"limit": 1})).json()["cases"][0]
        r = await own.post("/api/v1/feedback", json={"category": "grouping", "text": "主要诊断应入外科组",
                                                     "case_ids": [case["case_id"]]})
        assert r.status_code == 201, r.text
        fid = r.json()["id"]
        assert (await other.post("/api/v1/feedback", json={"category": "weights", "text": "权重偏低"})).status_code == 201
        assert (await admin.post(f"/api/v1/feedback/{fid}/triage", json={})).status_code == 200
        assert (await admin.post(f"/api/v1/feedback/{fid}/answer", json={"answer": "已复核，下一版本调整"})).status_code == 200

        # a weights draft open for comments: the own hospital objects, the other comments
        drg = case["group_code"]
        doc = policy() | {"version": 2}
        doc["weights"] = {"version": "test-w2", "table": doc["weights"]["table"] | {drg: "1.2000"}}
        today = datetime.now(UTC).astimezone(CST).date()
        r = await admin.post("/api/v1/negotiations", json={
            "kind": "policy", "title": "2024 权重调整（征求意见稿）", "document": doc,
            "opens": (today - timedelta(days=1)).isoformat(), "closes": (today + timedelta(days=10)).isoformat()})
        assert r.status_code == 201, r.text
        draft_id = r.json()["id"]
        path = f"/api/v1/negotiations/{draft_id}/comments"
        r = await own.post(path, json={"item": f"weight:{drg}", "kind": "objection", "reason": "成本测算偏低",
                                       "counter_proposal": "1.3500"})
        assert r.status_code == 201, r.text
        own_comment = r.json()["id"]
        assert (await other.post(path, json={"item": "coefficient:level:3", "reason": "系数建议不变"})).status_code == 201
        r = await admin.post(f"{path}/{own_comment}/answer", json={"outcome": "partly", "reason": "调至 1.3000"})
        assert r.status_code == 200, r.text

        async with serve_site(rt, admin, case["case_id"]) as site:
            yield Seeded(site, region, draft_id, drg, own_comment)
    finally:
        for client in (admin, own, other, no_cases):
            await client.aclose()
        await rt.stop()


async def _values(page: Any, chart: str) -> Any:
    await page.wait_for_selector(f'[data-chart="{chart}"][data-rendered="true"]')
    assert await page.locator(f'[data-chart="{chart}"] svg path').count() > 0
    return orjson.loads(await page.get_attribute(f'[data-chart="{chart}"]', "data-values") or "null")


async def _column(page: Any, table: str, n: int) -> list[str]:
    return [t.strip() for t in await page.locator(f"{table} tbody tr td:nth-child({n})").all_text_contents()]


async def _period(page: Any, period: str) -> None:
    """Choose the period on the overview, once each render of it is done (a render still on its
    way when the next page is opened would land over it)."""
    await page.wait_for_selector('main h2:has-text("总览")')
    await page.fill("#period", period)
    await page.press("#period", "Enter")
    await page.wait_for_selector(f'main h2:has-text("总览 · {period}")')


async def test_evaluation_scores_by_level_and_a_hospitals_own_components(seeded: Seeded) -> None:
    site = seeded.site
    listed = (await site.api.get("/api/v1/evaluations")).json()["evaluations"]
    quarter = next(e for e in listed if e["period"] == QUARTER)
    year = next(e for e in listed if e["period"] == YEAR)
    page = await _signed_in(site, "bureau")
    await _period(page, QUARTER)
    await page.click('#nav a[data-page="evaluation"]')
    rows = sorted(quarter["hospitals"], key=lambda h: (-h["level"], h["hospital_code"]))
    drawn = await _values(page, f"{seeded.region} · {QUARTER} 各医院绩效得分（按医院等级）")
    assert drawn == {"hospitals": [h["hospital_code"] for h in rows], "levels": [h["level"] for h in rows],
                     "scores": [float(h["score"]) for h in rows]}
    assert await _column(page, "#evaluation-table", 1) == [h["hospital_code"] for h in rows]
    assert await _column(page, "#evaluation-table", 3) == [h["score"] for h in rows]
    await _shot(page, "evaluation-quarter-bureau")

    await page.select_option("#evaluation-period", YEAR)  # the adopted year: the deposit return share
    await page.wait_for_selector("main .pill.ok")
    rows = sorted(year["hospitals"], key=lambda h: (-h["level"], h["hospital_code"]))
    shares = await _column(page, "#evaluation-table", 4)
    assert shares == [f"{Decimal(h['deposit_return_share']) * 100:.2f}%" for h in rows]
    assert "已采纳" in (await page.text_content("main .meta") or "")
    await _shot(page, "evaluation-year-bureau")
    await page.close()

    page = await _signed_in(site, "hospital")
    await _period(page, YEAR)
    await page.click('#nav a[data-page="evaluation"]')
    await page.wait_for_selector("#evaluation-components table")
    (mine,) = [h for h in year["hospitals"] if h["hospital_code"] == OWN]
    assert await page.text_content('[data-kpi="综合得分"] .value') == mine["score"]
    assert await _column(page, "#evaluation-components", 1) == [c["label"] for c in mine["components"]]
    drawn = await _values(page, "各项指标得分与满分")
    assert drawn[0] == [None if c["points"] is None else float(c["points"]) for c in mine["components"]]
    shown = await page.text_content("main") or ""
    assert all(h["hospital_code"] not in shown for h in year["hospitals"] if h["hospital_code"] != OWN)
    await _shot(page, "evaluation-hospital")
    await page.close()


async def test_timeliness_and_prepayments_with_a_hospital_seeing_its_own_row(seeded: Seeded) -> None:
    site = seeded.site
    q = {"region": seeded.region, "period": MONTH}
    api = (await site.api.get("/api/v1/indicators/timeliness", params=q)).json()
    status = {r["hospital_code"]: r["status"] for r in api["rows"]}
    assert status[OWN] == status[OTHER] == "within" and status[NO_CASES] == "pending"
    pre = (await site.api.get("/api/v1/indicators/prepayments", params={"region": seeded.region, "year": YEAR})).json()
    page = await _signed_in(site, "bureau")
    await _period(page, MONTH)
    await page.click('#nav a[data-page="timeliness"]')
    await page.wait_for_selector(".timeliness-rows table")
    assert await _column(page, ".timeliness-rows", 1) == [r["hospital_code"] for r in api["rows"]]
    assert await _column(page, ".timeliness-rows", 4) == [
        "—" if r["working_days"] is None else str(r["working_days"]) for r in api["rows"]]
    labels = {"within": "按时", "late": "逾期结算", "pending": "待结算", "overdue": "超期未结", "not_declared": "未申报"}
    assert await _column(page, ".timeliness-rows", 6) == [labels[r["status"]] for r in api["rows"]]
    assert await page.text_content('[data-kpi="按时"] .value') == str(api["counts"]["within"])
    assert await page.text_content('[data-kpi="待结算"] .value') == str(api["counts"]["pending"])
    assert await _column(page, ".prepayments", 1) == [r["hospital_code"] for r in pre["rows"]] + ["合计"]
    assert (await _column(page, ".prepayments", 2))[-1] == "¥800"
    await _shot(page, "timeliness-bureau")
    await page.close()

    page = await _signed_in(site, "hospital")
    await _period(page, MONTH)
    await page.click('#nav a[data-page="timeliness"]')
    await page.wait_for_selector(".timeliness-rows table")
    assert await _column(page, ".timeliness-rows", 1) == [OWN]
    assert await _column(page, ".prepayments", 1) == [OWN, "合计"]
    assert await _column(page, ".prepayments", 2) == ["¥500", "¥500"]
    await page.close()


async def test_feedback_counts_on_the_page_and_the_overview_and_a_hospitals_own_opinions(seeded: Seeded) -> None:
    site = seeded.site
    stats = (await site.api.get("/api/v1/feedback/stats")).json()
    everything = (await site.api.get("/api/v1/feedback")).json()["feedback"]
    page = await _signed_in(site, "bureau")
    await page.wait_for_selector('[data-kpi="意见反馈·意见总数"]')  # on the overview
    assert await page.text_content('[data-kpi="意见反馈·意见总数"] .value') == str(stats["total"])
    await page.click('#nav a[data-page="feedback"]')
    await page.wait_for_selector("#feedback-list table")
    assert await page.text_content('#feedback-kpis [data-kpi="意见总数"] .value') == str(stats["total"])
    assert await page.text_content('#feedback-kpis [data-kpi="已答复"] .value') == str(stats["answered"])
    mean = stats["answer_working_days"]["mean"]
    assert await page.text_content('#feedback-kpis [data-kpi="平均答复用时"] .value') == f"{mean} 个工作日"
    assert await _values(page, "各类别意见数") == [list(stats["by_category"].values())]
    assert await _column(page, "#feedback-list", 2) == [f["hospital_code"] for f in everything]
    assert set(await _column(page, "#feedback-list", 2)) == {OWN, OTHER}
    await _shot(page, "feedback-bureau")
    await page.close()

    page = await _signed_in(site, "hospital")
    await page.click('#nav a[data-page="feedback"]')
    await page.wait_for_selector("#feedback-list table")
    assert await _column(page, "#feedback-list", 2) == [OWN]
    assert await _column(page, "#feedback-list", 7) == ["已答复"]
    assert await page.locator("#feedback-kpis").count() == 0  # the counts are the bureau's
    await page.close()


async def test_negotiation_a_hospitals_impact_and_answers_and_the_bureaus_comments_per_item(seeded: Seeded) -> None:
    site = seeded.site
    page = await _signed_in(site, "hospital")
    await page.click('#nav a[data-page="negotiation"]')
    await page.click(f'#drafts-open a[href="#/negotiation/{seeded.draft_id}"]')
    await page.wait_for_selector("#own-comments table")
    async with await api_client_for(site, OWN) as own:
        impact = (await own.get(f"/api/v1/negotiations/{seeded.draft_id}/impact")).json()
    drawn = await _values(page, "各病组支付变化（草案 − 现行，元）")
    assert drawn == [[float(g["payment_change"]) for g in impact["groups"]]]
    assert any(g["drg"] == seeded.drg and Decimal(g["payment_change"]) != 0 for g in impact["groups"])
    own_rows = await page.locator("#own-comments tbody tr").all_text_contents()
    assert len(own_rows) == 1 and f"weight:{seeded.drg}" in own_rows[0] and "部分采纳" in own_rows[0]
    assert OTHER not in (await page.text_content("main") or "")  # everyone's comments, anonymised
    await _shot(page, "negotiation-hospital")
    await page.close()

    page = await _signed_in(site, "bureau")
    await page.goto(f"{site.base}/dashboard/#/negotiation/{seeded.draft_id}")
    await page.wait_for_selector("#item-comments table")
    comments = (await site.api.get(f"/api/v1/negotiations/{seeded.draft_id}/comments")).json()["comments"]
    items = sorted({c["item"] for c in comments})
    drawn = await _values(page, "各条目意见与异议数")
    assert drawn == [[sum(c["item"] == i and c["kind"] == k for c in comments) for i in items]
                     for k in ("comment", "objection")]
    assert await _column(page, "#item-comments", 2) == [c["hospital_code"] for c in
                                                         sorted(comments, key=lambda c: (c["item"], c["id"]))]
    report = await page.get_attribute('main a[href$="/report.html"]', "href")
    r = await page.request.get(f"{site.base}{report}")  # the same signed-in session
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert "成本测算偏低" in await r.text()
    await _shot(page, "negotiation-bureau")
    await page.close()


async def api_client_for(site: Site, hospital: str) -> Any:
    """A bearer client of the served gateway as a hospital (a token of its own, from the bureau)."""
    import httpx

    r = await site.api.post("/api/v1/tokens", json={"role": "hospital", "hospital": hospital})
    assert r.status_code == 201, r.text
    return httpx.AsyncClient(base_url=site.base, headers={"authorization": f"Bearer {r.json()['token']}"})


async def test_reports_open_in_the_same_session_and_a_hospital_gets_its_own(seeded: Seeded) -> None:
    site = seeded.site
    page = await _signed_in(site, "bureau")
    await _period(page, MONTH)
    await page.click('#nav a[data-page="reports"]')
    await page.wait_for_selector("#report-bulletin-link[href]")
    await page.select_option('#report-feedback select[name="hospital"]', OWN)
    async with page.context.expect_page() as opened:  # a new tab of the same browser, no token asked
        await page.click("#report-feedback-link")
    report = await opened.value
    await report.wait_for_load_state()
    assert "月度反馈" in await report.content() and OWN in await report.content()
    await report.close()
    bulletin = await page.get_attribute("#report-bulletin-link", "href") or ""
    assert bulletin == f"/api/v1/reports/bulletin?region={seeded.region}&quarter={QUARTER}&format=html"  # no empty budget
    r = await page.request.get(f"{site.base}{bulletin}")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    await page.fill('#report-bulletin input[name="budget"]', "5000000.00")
    assert "budget=5000000.00" in (await page.get_attribute("#report-bulletin-link", "href") or "")
    special = await page.get_attribute("#report-special-link", "href") or ""
    assert special == "/api/v1/reports/special-cases?half=2024H2&format=html"
    assert (await page.request.get(f"{site.base}{special}")).status == 200
    await _shot(page, "reports-bureau")
    await page.close()

    page = await _signed_in(site, "hospital")
    await _period(page, MONTH)
    await page.click('#nav a[data-page="reports"]')
    await page.wait_for_selector("#issued-feedback table")
    assert await page.locator("#report-bulletin").count() == 0  # the bulletin is the bureau's
    assert await page.input_value('#report-feedback input[name="hospital"]') == OWN
    issued = (await site.api.get("/api/v1/reports/feedback/issued", params={"hospital": OWN})).json()["issued"]
    assert await _column(page, "#issued-feedback", 1) == [i["period"] for i in issued]
    href = await page.locator("#issued-feedback a").first.get_attribute("href")
    r = await page.request.get(f"{site.base}{href}")
    assert r.status == 200 and "月度反馈" in await r.text()
    # another hospital's report stays refused with the same session
    r = await page.request.get(f"{site.base}/api/v1/reports/feedback?hospital={OTHER}&month={MONTH}")
    assert r.status == 403 and (await r.json())["error"]["code"] == "HOSPITAL_MISMATCH"
    await _shot(page, "reports-hospital")
    await page.close()
