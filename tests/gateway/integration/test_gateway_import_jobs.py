"""An import job tells its sender exactly which lines it kept: after an interrupted upload, what
to send again."""

from __future__ import annotations

from pathlib import Path

import orjson
from helpers import SHARED, api_client, lists

from drgdip.stages import build_runtime


async def test_an_import_job_lists_each_kept_line_by_its_number_to_its_sender_only(tmp_path: Path) -> None:
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        batch = lists(8)
        hospital = batch[0]["setlinfo"]["fixmedins_code"]
        mine = [sl for sl in batch if sl["setlinfo"]["fixmedins_code"] == hospital]
        bad = mine[0] | {"setlinfo": mine[0]["setlinfo"] | {"setl_id": "S\u0000X"}}
        # line 1 good, line 2 blank, line 3 not JSON, line 4 good, line 5 refused by its content
        body = b"\n".join([orjson.dumps(mine[0]), b"", b"{not json", orjson.dumps(mine[-1]), orjson.dumps(bad)])
        async with await api_client(rt, "hospital", hospital) as client:
            r = await client.post("/api/v1/settlement-lists:import", content=body)
            assert r.status_code == 200, r.text
            job_id = r.json()["job_id"]
            r = await client.get(f"/api/v1/imports/{job_id}")
            assert r.status_code == 200, r.text
            job = r.json()
        assert job["finished_at"] is not None and job["interrupted"] is False
        kept = {line["line"]: line["status"] for line in job["lines"]}
        assert 2 not in kept  # a blank line is no list
        assert (kept[1], kept[3], kept[5]) == ("accepted", "rejected", "rejected")  # each kept verbatim
        assert kept[4] in ("accepted", "duplicate")  # the same list as line 1 when only one is mine
        assert sum(job["counts"].values()) == len(kept)

        async with await api_client(rt, "hospital", "H-OTHER") as other:
            r = await other.get(f"/api/v1/imports/{job_id}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND"
        async with await api_client(rt, "bureau-analyst") as analyst:
            assert (await analyst.get(f"/api/v1/imports/{job_id}")).status_code == 403
        async with await api_client(rt) as admin:
            assert (await admin.get(f"/api/v1/imports/{job_id}")).json()["lines"] == job["lines"]
            r = await admin.get(f"/api/v1/imports/{job_id}", params={"limit": 1, "offset": 1})
            assert [line["line"] for line in r.json()["lines"]] == [3]  # the second kept line
            assert (await admin.get("/api/v1/imports/no-such-job")).status_code == 404
    finally:
        await rt.stop()
