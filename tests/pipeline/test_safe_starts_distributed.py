"""Replicas started together on a fresh database (a rolling deployment, a scale-up from zero):
every one comes up, whichever of them ran the migrations."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import SHARED
from processes import ServiceProcess

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_two_groupers_started_together_on_a_fresh_database_both_come_up(
        kafka_bootstrap: str, new_pg_database, tmp_path: Path, attempt: int) -> None:
    env = {"DRGDIP_BUS": f"kafka://{kafka_bootstrap}", "DRGDIP_DB": new_pg_database("grouper"),
           "DRGDIP_NAMESPACE": f"t{uuid.uuid4().hex[:8]}.", "DRGDIP_SCHEMES_DIR": str(SHARED / "schemes")}
    groupers = [ServiceProcess("grouper", env, tmp_path) for _ in range(2)]
    try:
        for g in groupers:
            g.start(wait=False)
        for g in groupers:
            g.wait_ready()
    finally:
        for g in groupers:
            g.stop()
