"""Fuzzing the gateway's public API from its own OpenAPI document (schemathesis).

The suite runs in one embedded process; every generated request must get an answer below 500,
and every 422 must name the field it is about.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from helpers import SHARED
from hypothesis import HealthCheck, Phase, given, settings
from processes import DRGDIP, ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    db = f"sqlite+aiosqlite:///{tmp / 'd.db'}"
    out = subprocess.run([DRGDIP, "token", "create", "--role", "bureau-admin", "--db", db],
                         capture_output=True, text=True, check=True).stdout
    token = out.strip().splitlines()[-1]
    proc = ServiceProcess("all", {"DRGDIP_DB": db, "DRGDIP_SCHEMES_DIR": str(SHARED / "schemes"),
                                  "DRGDIP_DICTIONARY_SCHEME": str(SHARED / "schemes" / "chs-drg-1.1")},
                          Path(tmp)).start()
    try:
        yield proc, token
    finally:
        proc.stop()


def _fuzz(operation, url: str, token: str):  # type: ignore[no-untyped-def]
    """A hypothesis test of one API operation."""

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    def check(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(base_url=url, headers={"authorization": f"Bearer {token}"})
        assert response.status_code < 500, f"{operation.label}: {response.text}"
        if response.status_code == 422:
            assert response.json()["error"]["field"], f"{operation.label}: {response.text}"

    return check


def test_no_server_error_and_every_rejection_names_a_field(gateway) -> None:  # type: ignore[no-untyped-def]
    proc, token = gateway
    schema = schemathesis.openapi.from_url(proc.url + "/openapi.json").include(path_regex="^/api/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        _fuzz(operation, proc.url, token)()
