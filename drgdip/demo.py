"""The demo: the whole pipeline in one process on lists made from the reference test cases.

Settlement lists are built from `<shared>/testdata/chs-drg-1.1-cases.jsonl` (hospital, person,
dates added), posted to the gateway, then grouped, priced and reviewed; a summary is printed.
The pricing policy uses illustrative weights until the bureau calibrates its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

HOSPITALS = ["H35050001", "H35050002", "H35050003", "H35050004", "H35050005", "H35050006"]
# Illustrative relative weights by the DRG's last digit (1 MCC, 3 CC, 5 none, 9 not split).
DEMO_WEIGHTS = {"1": Decimal("1.6000"), "3": Decimal("1.2000"), "5": Decimal("0.9000"), "9": Decimal("1.0000")}


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
        "hi_type": sl.get("insurance_type") or "390", "insuplc": sl.get("region", "default"),
        "ipt_med_type": "1", "adm_time": f"{adm} 09:00:00", "adm_caty": sl.get("dept") or "A03",
        "dscg_time": f"{dscg} 10:00:00", "dscg_caty": sl.get("dept") or "A03",
        "act_ipt_days": str(sl.get("los") or 0), "dscg_way": str(sl["leaving_type"] if sl.get("leaving_type") in (1, 2, 3, 4, 5) else 9),
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


def demo_policy(scheme_dir: Path) -> dict[str, Any]:
    """A rate-method policy (services/pricer/policy.py format) with illustrative weights.

    Harbin-scale rates (employee 12252.70, resident 9649.24 per RW); the first four demo
    hospitals are tertiary (1.0), the fifth secondary (0.85), the sixth primary (0.70).
    """
    drgs = orjson.loads((scheme_dir / "drg.json").read_bytes())["drgs"]
    return {
        "format": "drgdip.pricing-policy/1", "policy_id": "demo-2024", "version": 1,
        "region": "default", "valid_from": "2024-01-01", "valid_to": "2024-12-31",
        "method": "rate", "scheme_id": "chs-drg-1.1",
        "weights": {"version": "demo-illustrative",
                    "table": {d["code"]: str(DEMO_WEIGHTS.get(d["code"][-1], Decimal("1.0000")))
                              for d in drgs}},
        "rates": {"employee": {"default": "12252.70"}, "resident": {"default": "9649.24"},
                  "default": {"default": "9649.24"}},
        "hospitals": {"level_coefficients": {"3": "1.0", "2": "0.85", "1": "0.70"},
                      "levels": {**{h: 3 for h in HOSPITALS[:4]}, HOSPITALS[4]: 2, HOSPITALS[5]: 1}},
        "notes": "Demo only: illustrative weights, not calibrated on any region's data.",
    }


async def run_demo(shared: Path, n: int, data_dir: Path) -> int:
    from drgdip.stages import build_runtime

    console = Console(stderr=True)
    cases_file = shared / "testdata" / "chs-drg-1.1-cases.jsonl"
    if not cases_file.is_file():
        console.print(f"[red]cannot find {cases_file}: pass --shared PATH[/red]")
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    for f in data_dir.glob("drgdip.db*"):
        f.unlink()
    policy_file = data_dir / "demo-policy.json"
    policy_file.write_bytes(orjson.dumps(demo_policy(shared / "schemes" / "chs-drg-1.1")))
    runtime = build_runtime("all", db=f"sqlite+aiosqlite:///{data_dir / 'drgdip.db'}",
                           schemes_dir=shared / "schemes", policy_file=policy_file, log_level="WARNING")
    lists = settlement_lists(cases_file, n)
    started = time.perf_counter()
    await runtime.start()
    try:
        from services.gateway.auth import create_token

        _id, token = await create_token(runtime.engine, "bureau-admin", label="demo")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://demo",
                                     headers={"authorization": f"Bearer {token}"}) as client:
            with Progress(console=console) as progress:
                sent = progress.add_task("submitting lists", total=len(lists))
                rejected = 0
                for sl in lists:
                    r = await client.post("/api/v1/settlement-lists", json=national_list(sl))
                    rejected += r.status_code >= 400  # intake QC stops lists with blocking errors
                    progress.advance(sent)
                done = progress.add_task("grouped, priced, reviewed", total=len(lists))
                while True:
                    s = (await client.get("/api/v1/summary")).json()
                    reviewed = s["by_status"].get("reviewed", 0)
                    progress.update(done, completed=reviewed)
                    if reviewed >= len(lists) - rejected:
                        break
                    await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            rows = []
            offset = 0
            while True:
                page = (await client.get("/api/v1/cases", params={"limit": 1000, "offset": offset})).json()["cases"]
                if not page:
                    break
                for c in page:
                    rows.append((await client.get(f"/api/v1/cases/{c['case_id']}")).json())
                offset += len(page)
    finally:
        await runtime.stop()
    print_summary(rows, elapsed, data_dir)
    return 0


def print_summary(rows: list[dict[str, Any]], elapsed: float, data_dir: Path) -> None:
    out = Console()
    grouped = Counter(r["grouped"]["status"] for r in rows)
    drgs = Counter(r["grouped"]["drg"] for r in rows if r["grouped"]["status"] == "SUCCESS")
    priced = [r["priced"] for r in rows if r["priced"]["status"] == "PRICED"]
    total = sum((Decimal(p["payment_standard"]) for p in priced), Decimal("0"))
    flagged = [r for r in rows if r["reviewed"]["flags"]]
    n = len(rows)
    out.print(f"\n[bold]drgdip demo[/bold]: {n} settlement lists through ingest → grouper → pricer → "
              f"review → gateway in {elapsed:.1f} s ({n / elapsed:.0f} lists/s), embedded mode")
    t = Table(title="Grouping (CHS-DRG 1.1)")
    t.add_column("status")
    t.add_column("cases", justify="right")
    for status, k in grouped.most_common():
        t.add_row(status, str(k))
    out.print(t)
    out.print(f"入组率 (grouped share): {grouped.get('SUCCESS', 0) / n:.1%}")
    top = Table(title="Top DRGs")
    top.add_column("DRG")
    top.add_column("cases", justify="right")
    for drg, k in drgs.most_common(8):
        top.add_row(drg, str(k))
    out.print(top)
    out.print(f"Priced: {len(priced)} cases, payment standards total ¥{total:,.2f} "
              f"(illustrative weights; calibrate real ones from history)")
    out.print(f"Review: {len(flagged)} cases flagged as readmissions within 15 days")
    out.print(f"Database: {data_dir / 'drgdip.db'} — browse it with "
              f"`drgdip serve all --data-dir {data_dir}` and GET /api/v1/cases")
