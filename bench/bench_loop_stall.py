"""Event-loop stalls and memory of the embedded suite under the heaviest requests it accepts.

    .venv/bin/python bench/bench_loop_stall.py [--shared ../shared] [--lines 5000] [--imports 50]

Serves `drgdip serve all` in this process (uvicorn on a free port, one SQLite file, the
in-process bus) while a ticker task on the server's event loop measures how late it wakes up:
the largest delay while a request runs is the longest the loop was kept from every other
request. The client is another process (its work and memory never count), and probes `/livez`
every 20 ms during each request, so a stall shows as a slow probe too.

Request kinds, each alone: a list at the bounds (100 diagnoses, 100 procedures, 200 fee
lines), the draft check of such a list, a `--lines` JSON Lines bulk import (5,000 generated
lists ≈ 19 MB), the same lists as GB18030 CSV, and once the pipeline has grouped, priced and
reviewed them: quality scores, the case list, the audit export, a policy import, re-pricing,
a monthly and an annual settlement run. "pipeline" is the largest delay while the stages work
through the imports with no request running.

Memory: `--imports` concurrent imports of `--lines` lists each (250,000 lists by default, as
issue 12 measured): resident memory before, at the peak, once the pipeline is idle and the
garbage collected, and after `--idle` more seconds of idling; with the largest loop delay and
the `/readyz` answers during the imports.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running as a plain script from anywhere
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import orjson  # noqa: E402

REGION = "350500"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The largest resident memory seen, sampled every 50 ms in a thread."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mb())


class StallMeter:
    """How late the event loop wakes a task that sleeps 2 ms: the longest stall since `take`,
    and the most CPU time the loop's thread spent in one such interval (what the loop itself
    computed, whatever else runs on the machine: the figure to trust on a busy machine)."""

    PERIOD = 0.002

    def __init__(self) -> None:
        self.worst = self.worst_cpu = 0.0
        self.last = time.monotonic()
        self.thread = threading.get_ident()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        while True:
            t, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(self.PERIOD)
            self.worst = max(self.worst, loop.time() - t - self.PERIOD)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - cpu)
            self.last = time.monotonic()

    def take(self) -> tuple[float, float]:
        worst, self.worst = self.worst, 0.0
        cpu, self.worst_cpu = self.worst_cpu, 0.0
        return worst, cpu


class Sampler:
    """With --profile: where the loop's thread is while the loop is late (over 20 ms since its
    last tick), sampled every 5 ms from another thread: the code to move off the loop."""

    def __init__(self, meter: StallMeter) -> None:
        self.meter, self.kind = meter, ""
        self.samples: dict[str, Counter[str]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import traceback

        while not self._stop.wait(0.005):
            if time.monotonic() - self.meter.last < 0.02:
                continue
            frame = sys._current_frames().get(self.meter.thread)
            if frame is None:
                continue
            ours = [f for f in traceback.extract_stack(frame)
                    if f.filename.startswith(str(REPO)) and "/bench/" not in f.filename and "/.venv/" not in f.filename]
            where = " < ".join(f"{Path(f.filename).relative_to(REPO)}:{f.lineno} {f.name}" for f in ours[::-1][:3])
            self.samples.setdefault(self.kind, Counter())[where or "(outside the repository)"] += 1

    def report(self) -> None:
        self._stop.set()
        for kind, counter in self.samples.items():
            print(f"\nwhile the loop was late during {kind or 'start'} (5 ms samples):")
            for where, n in counter.most_common(6):
                print(f"  {n:>5}  {where}")


# --------------------------------------------------------------------------- request bodies

def generated_lists(scheme: Path, n: int) -> list[dict[str, Any]]:
    from drgdip.generate import generate_region

    return list(generate_region(scheme, hospitals=20, cases=n, years=2, end_year=2025, seed=5))


def renumbered(body: bytes, k: int) -> bytes:
    """The same lists as other settlements of other persons (import `k` of several)."""
    return (body.replace(b'"setl_id":"S', b'"setl_id":"S%02d' % k)
            .replace(b'"psn_no":"P', b'"psn_no":"P%02d' % k))


def jsonl(lists: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(sl) + b"\n" for sl in lists)


CSV_COLUMNS = ("hospital_code", "setl_id", "psn_no", "psn_name", "region", "sex", "age", "dept", "los",
               "leaving_type", "admission_date", "discharge_date", "diagnoses", "procedures",
               "total_cost", "patient_share", "insurance_type", "dcla_time")


def csv_gb18030(lists: list[dict[str, Any]]) -> bytes:
    """The lists in the flat CSV layout, encoded as Chinese hospital systems export them."""
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for sl in lists:
        s = sl["setlinfo"]
        share = sum(float(s.get(k) or 0) for k in ("psn_selfpay", "psn_ownpay"))
        w.writerow([s["fixmedins_code"], "C" + s["setl_id"], s["psn_no"], s["psn_name"], s["insuplc"],
                    s["gend"], s["age"], s["dscg_caty"], s["act_ipt_days"], s["dscg_way"],
                    s["adm_time"][:10], s["dscg_time"][:10],
                    "|".join(d["diag_code"] for d in sorted(sl["diseinfo"], key=lambda d: d["maindiag_flag"] != "1")),
                    "|".join(o["oprn_oprt_code"] for o in sl["oprninfo"]),
                    s["medfee_sumamt"], f"{share:.2f}", s["hi_type"], s["dcla_time"]])
    return out.getvalue().encode("gb18030")


def list_at_the_bounds(base: dict[str, Any], scheme: Path) -> dict[str, Any]:
    """A list as large as the default bounds accept: 100 diagnoses, 100 procedures, 200 fee lines."""
    diag = [line.split("\t")[0] for line in (scheme / "diagnoses.tsv").read_text(encoding="utf-8").splitlines()[1:101]]
    proc = [line.split("\t")[0] for line in (scheme / "procedures.tsv").read_text(encoding="utf-8").splitlines()[1:101]]
    sl = orjson.loads(orjson.dumps(base))
    sl["setlinfo"].update(setl_id="SBOUNDS0001", fixmedins_code="H35050001", diag_code_cnt=str(len(diag)), oprn_oprt_code_cnt=str(len(proc)))
    first = base["diseinfo"][0]
    sl["diseinfo"] = [dict(first, diag_code=c, maindiag_flag="1" if i == 0 else "0", diag_name="诊" * 400)
                      for i, c in enumerate([base["setlinfo"]["wm_dise_code"], *diag[:99]])]
    op = base["oprninfo"][0] if base["oprninfo"] else {"oprn_oprt_type": "1", "oprn_oprt_date": base["setlinfo"]["adm_time"]}
    sl["oprninfo"] = [dict(op, oprn_oprt_code=c, oprn_oprt_name="术" * 400) for c in proc]
    # the fee lines of every category, split into 200 that still sum to the total
    per = 200 // len(base["iteminfo"])
    sl["iteminfo"] = [dict(item, amt=amt, claa_sumfee=amt, clab_amt="0.00", fulamt_ownpay_amt="0.00", oth_amt="0.00")
                      for item in base["iteminfo"] for amt in _split(item["amt"], per)]
    return sl


def _split(amount: str, n: int) -> list[str]:
    fen = round(float(amount) * 100)
    parts = [fen // n] * n
    parts[-1] += fen - sum(parts)
    return [f"{p / 100:.2f}" for p in parts]


def draft_of(sl: dict[str, Any]) -> dict[str, Any]:
    s = sl["setlinfo"]
    return {"sex": int(s["gend"]), "age": int(s["age"]), "region": REGION, "los": int(s["act_ipt_days"]),
            "discharge_date": s["dscg_time"][:10],
            "diagnoses": [d["diag_code"] for d in sl["diseinfo"]],
            "procedures": [o["oprn_oprt_code"] for o in sl["oprninfo"]]}


# --------------------------------------------------------------------------- the client (another process)

def prepare(scheme: Path, lines: int, workdir: Path) -> dict[str, Any]:
    """Write the request bodies to files: the JSON Lines and CSV imports, the list at the
    bounds and its draft; the newest discharge year."""
    lists = generated_lists(scheme, lines)
    bounds = list_at_the_bounds(next(sl for sl in lists if sl["oprninfo"] and sl["iteminfo"]), scheme)
    files = {"jsonl": jsonl(lists), "csv": csv_gb18030(lists), "bounds": orjson.dumps(bounds),
             "draft": orjson.dumps(draft_of(bounds)), "policy": orjson.dumps(_policy(scheme))}
    for name, body in files.items():
        (workdir / name).write_bytes(body)
    return {"year": max(sl["setlinfo"]["dscg_time"][:4] for sl in lists),
            "sizes": {name: len(body) for name, body in files.items()}}


def request(base: str, token: str, method: str, path: str, body: Path | None = None,
            params: dict[str, Any] | None = None, json: Any = None) -> dict[str, Any]:
    """One request, with a /livez probe every 20 ms while it runs: its status, answer and size,
    and the slowest /livez answer meanwhile."""
    done = threading.Event()
    worst = 0.0

    def probe() -> None:
        nonlocal worst
        with httpx.Client(base_url=base, timeout=60) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get("/livez").raise_for_status()
                worst = max(worst, time.perf_counter() - t)
                done.wait(0.02)

    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=base, headers=headers, timeout=3600) as c:
        prober = pool.submit(probe)
        try:
            r = c.request(method, path, content=body.read_bytes() if body else None, params=params, json=json)
        finally:
            done.set()
            prober.result()
    small = r.headers.get("content-type", "").startswith("application/json") and len(r.content) < 1 << 20
    return {"status": r.status_code, "text": r.text[:300], "size": len(r.content), "livez": worst,
            "json": r.json() if small else None}


def imports(base: str, token: str, body: Path, n: int) -> dict[str, Any]:
    """`n` concurrent imports of the body's lists (renumbered: other settlements and persons),
    with a /readyz probe every 0.5 s while they run."""
    bodies = [renumbered(body.read_bytes(), k) for k in range(n)]
    ready: list[int] = []
    stop = threading.Event()

    def readiness() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.wait(0.5):
                ready.append(c.get("/readyz").status_code)

    def send(b: bytes) -> int:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=3600) as c:
            r = c.post("/api/v1/settlement-lists:import", content=b)
            r.raise_for_status()
            return int(r.json()["accepted"])

    with ThreadPoolExecutor(n + 1) as pool:
        probe = pool.submit(readiness)
        accepted = sum(pool.map(send, bodies))
        stop.set()
        probe.result()
    return {"accepted": accepted, "readyz": ready}


# --------------------------------------------------------------------------- the run

Row = tuple[str, tuple[float, float], float, str]  # kind, (stall, CPU on the loop), slowest /livez, note


async def request_kinds(rt: Any, client: Any, meter: StallMeter, sampler: Sampler | None, work: Path, admin: str,
                        hospital: str, lines: int, prepared: dict[str, Any]) -> list[Row]:
    from drgdip.demo import wait_idle

    loop = asyncio.get_running_loop()
    base = f"http://127.0.0.1:{rt.settings.port}"
    rows: list[Row] = []
    sizes = prepared["sizes"]

    async def measure(kind: str, method: str, path: str, *, token: str = admin, body: str | None = None,
                      params: dict[str, Any] | None = None, json: Any = None) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        meter.take()
        if sampler:
            sampler.kind = kind
        r = await loop.run_in_executor(client, request, base, token, method, path,
                                       work / body if body else None, params, json)
        stall = meter.take()
        if r["status"] >= 300:
            raise RuntimeError(f"{kind}: {r['status']} {r['text']}")
        rows.append((kind, stall, r["livez"], _size(r["size"])))
        return r

    await measure(f"list at the bounds ({sizes['bounds'] >> 10} KB)", "POST", "/api/v1/settlement-lists",
                  token=hospital, body="bounds")
    await measure("draft check, 100 dx + 100 px", "POST", "/api/v1/group", body="draft")
    r = await measure(f"import {lines} JSON Lines ({sizes['jsonl'] >> 20} MB)", "POST",
                      "/api/v1/settlement-lists:import", body="jsonl")
    assert r["json"]["accepted"] > 0.9 * lines, r["text"]
    r = await measure(f"import {lines} CSV GB18030 ({sizes['csv'] >> 10} KB)", "POST",
                      "/api/v1/settlement-lists:import", body="csv", params={"format": "csv"})
    assert r["json"]["accepted"] > 0.9 * lines, r["text"]
    meter.take()
    if sampler:
        sampler.kind = "pipeline"
    await wait_idle(rt, 3600)
    rows.append(("pipeline (no request)", meter.take(), 0.0, f"{2 * lines} lists"))

    year, policy = prepared["year"], orjson.loads((work / "policy").read_bytes())
    await measure("quality scores", "GET", "/api/v1/quality")
    await measure("case list (500)", "GET", "/api/v1/cases", params={"limit": 500})
    await measure("audit export", "GET", "/api/v1/audit.csv")
    await measure("policy import", "POST", "/api/v1/policies", body="policy")
    await measure("reprice", "POST", "/api/v1/reprice", json={"region": REGION})
    await measure(f"settlement {year}-06", "POST", "/api/v1/settlements",
                  json={"policy_id": policy["policy_id"], "period": f"{year}-06"})
    await measure(f"annual clearing {year}", "POST", "/api/v1/settlements",
                  json={"policy_id": policy["policy_id"], "period": year, "budget": "100000000.00"})
    await measure("statements", "GET", "/api/v1/statements", params={"hospital": "H35050001"})
    meter.take()
    if sampler:
        sampler.kind = "pipeline after re-pricing"
    await wait_idle(rt, 3600)
    rows.append(("pipeline after re-pricing", meter.take(), 0.0, ""))
    return rows


def _size(n: int) -> str:
    return f"{n >> 10} KB answer" if n >= 1024 else f"{n} B answer"


def _policy(scheme: Path) -> dict[str, Any]:
    drgs = orjson.loads((scheme / "drg.json").read_bytes())["drgs"]
    return {"format": "drgdip.pricing-policy/1", "policy_id": "bench-drg", "version": 1, "region": REGION,
            "valid_from": "2000-01-01", "valid_to": None, "method": "rate", "scheme_id": scheme.name,
            "weights": {"version": "bench-w1", "table": {d["code"]: "1.0000" for d in drgs}},
            "rates": {"default": {"default": "10000.00"}},
            "hospitals": {"level_coefficients": {"1": "0.8", "2": "0.9", "3": "1.0"},
                          "levels": {f"H350500{i:02d}": 3 for i in range(1, 21)}}}


async def concurrent_imports(rt: Any, client: Any, meter: StallMeter, sampler: Sampler | None, work: Path,
                             admin: str, n: int, idle: float) -> dict[str, Any]:
    from drgdip.demo import wait_idle

    gc.collect()
    before = rss_mb()
    peak = Peak()
    meter.take()
    if sampler:
        sampler.kind = f"{n} concurrent imports"
    t = time.perf_counter()
    sent = await asyncio.get_running_loop().run_in_executor(
        client, imports, f"http://127.0.0.1:{rt.settings.port}", admin, work / "jsonl", n)
    imported = time.perf_counter() - t
    await wait_idle(rt, 7200)
    through = time.perf_counter() - t
    stall = meter.take()
    top = peak.stop()
    gc.collect()
    after = rss_mb()
    await asyncio.sleep(idle)
    gc.collect()
    return {"imports": n, "accepted": sent["accepted"], "imported_s": imported, "through_s": through,
            "stall": stall, "readyz": sent["readyz"], "before": before, "peak": top, "after": after,
            "idle": rss_mb(), "idle_s": idle}


async def run(shared: Path, lines: int, n_imports: int, idle: float, workdir: Path, profile: bool) -> None:
    import multiprocessing

    import uvicorn

    from drgdip.stages import build_runtime
    from services.gateway.repository import create_token

    scheme = shared / "schemes" / "chs-drg-1.1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the client is another process: its work and memory never count as the server's
    client = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    prepared = await asyncio.get_running_loop().run_in_executor(client, prepare, scheme, lines, workdir)
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{workdir / 'drgdip.db'}", schemes_dir=shared / "schemes",
                       dictionary_scheme=scheme, log_level="WARNING", port=port)
    await rt.start()
    async with rt.engine.begin() as conn:
        _i, admin = await create_token(conn, "bureau-admin", None)
        _j, hospital = await create_token(conn, "hospital", "H35050001")
    server = uvicorn.Server(uvicorn.Config(rt.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    meter = StallMeter()
    ticking = asyncio.create_task(meter.run())
    sampler = Sampler(meter) if profile else None
    try:
        start_rss = rss_mb()
        rows = await request_kinds(rt, client, meter, sampler, workdir, admin, hospital, lines, prepared)
        print(f"\nlargest event-loop stall per request kind (ticker every {StallMeter.PERIOD * 1000:.0f} ms; "
              f"resident memory at start {start_rss:.0f} MB)")
        print(f"{'request':<42} {'loop stall':>10} {'CPU on loop':>12} {'slowest /livez':>15}")
        for kind, (stall, cpu), livez, note in rows:
            probe = f"{livez * 1000:>12.0f} ms" if livez else f"{'-':>15}"
            print(f"{kind:<42} {stall * 1000:>7.0f} ms {cpu * 1000:>9.0f} ms {probe}  {note}", flush=True)
        if n_imports:
            m = await concurrent_imports(rt, client, meter, sampler, workdir, admin, n_imports, idle)
            ok = sum(1 for c in m["readyz"] if c == 200)
            print(f"\n{m['imports']} concurrent imports of {lines} lists: {m['accepted']} accepted, imported in "
                  f"{m['imported_s']:.0f} s, through the pipeline in {m['through_s']:.0f} s; largest loop stall "
                  f"{m['stall'][0] * 1000:.0f} ms ({m['stall'][1] * 1000:.0f} ms CPU on the loop); /readyz 200 on {ok} of {len(m['readyz'])} probes")
            print(f"resident memory: before {m['before']:.0f} MB, peak {m['peak']:.0f} MB, idle pipeline "
                  f"+ gc {m['after']:.0f} MB, after {m['idle_s']:.0f} s idle {m['idle']:.0f} MB", flush=True)
        if sampler:
            sampler.report()
    finally:
        ticking.cancel()
        server.should_exit = True
        await serving
        await rt.stop()
        client.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")))
    p.add_argument("--lines", type=int, default=5000, help="lists per import")
    p.add_argument("--imports", type=int, default=50, help="concurrent imports of the memory run (0: none)")
    p.add_argument("--idle", type=float, default=30, help="seconds idle before the last memory figure")
    p.add_argument("--profile", action="store_true", help="where the loop is while it is late")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.shared.resolve(), args.lines, args.imports, args.idle, Path(tmp), args.profile))


if __name__ == "__main__":
    main()
