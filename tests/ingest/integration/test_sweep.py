"""Work left undone is finished by the sweep, not only at start: lists stored but never decided
and import jobs whose client went away; a list someone else decided is not decided again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import lists
from sqlalchemy import func, select

from services.ingest import repository
from services.ingest.domain.intake import Received, Stored
from shared.events import CASE_RECEIVED


@pytest.fixture(params=["sqlite", "postgres"])
async def runtime(request, tmp_path: Path) -> Any:
    from drgdip.stages import build_runtime

    db = (request.getfixturevalue("new_pg_database")("sweep") if request.param == "postgres"
          else f"sqlite+aiosqlite:///{tmp_path / 'i.db'}")
    rt = build_runtime("ingest", db=db, log_level="WARNING")
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_the_sweep_decides_stored_lists_and_closes_an_interrupted_job(runtime: Any) -> None:
    intake = runtime.stages[0].service
    engine = runtime.engine
    items = [Received("native", orjson.dumps(sl), job_id="job1") for sl in lists(7, seed=3)]
    async with engine.begin() as conn:  # a request that stored the lists, then its process died
        await repository.start_job(conn, "job1", None, "jsonl")
        ids = await repository.store_raw(conn, items)
    assert await intake.sweep(idle_before=datetime.now(UTC) + timedelta(seconds=1)) == 7
    async with engine.connect() as conn:
        statuses = (await conn.scalars(select(repository.raw_table.c.status))).all()
        job = (await conn.execute(select(repository.jobs).where(repository.jobs.c.job_id == "job1"))).one()
        versions = await conn.scalar(select(func.count()).select_from(repository.lists))
    assert statuses == ["accepted"] * 7 and versions == 7
    assert job.finished_at is not None
    assert orjson.loads(job.summary) == {"accepted": 7, "duplicate": 0, "rejected": 0, "kept": 7,
                                         "interrupted": True}
    # the request's process was alive after all and decides them too late: nothing twice
    outcomes = await intake.finish([Stored(i, "native", r.raw, None, r.correlation_id)
                                    for i, r in zip(ids, items, strict=True)])
    assert [o.status for o in outcomes] == ["accepted"] * 7
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(repository.lists)) == 7
    assert await intake.sweep() == 0


async def test_a_running_import_is_not_closed_by_the_sweep(runtime: Any) -> None:
    intake = runtime.stages[0].service
    async with runtime.engine.begin() as conn:
        await repository.start_job(conn, "job2", None, "jsonl")
    intake.importing.add("job2")
    await intake.sweep(idle_before=datetime.now(UTC) + timedelta(seconds=1))
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(select(repository.jobs.c.finished_at)) is None
    assert runtime.bus.log(CASE_RECEIVED) == []
