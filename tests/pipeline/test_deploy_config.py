"""The deployment files use exactly the settings names the services read."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

from drgdip.stages import SETTINGS_BY_SERVICE
from shared.settings import env_names

KNOWN = set().union(*(env_names(cls) for cls in SETTINGS_BY_SERVICE.values()))


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/k8s/drgdip.yaml"])
def test_every_drgdip_variable_in_the_deployment_is_a_real_setting(path: str) -> None:
    names = set(re.findall(r"\b(DRGDIP_[A-Z_]+)\b", (REPO / path).read_text()))
    names.discard("DRGDIP_SCHEMES")  # compose's own variable for the host folder of schemes
    assert names, "no settings found"
    assert names <= KNOWN, f"unknown settings: {sorted(names - KNOWN)}"


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_each_service_is_deployed_with_its_database(service: str) -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    block = compose.split(f"\n  {service}:\n", 1)[1].split("\n\n", 1)[0]
    assert f'command: ["{service}"]' in block and "DRGDIP_DB:" in block
    assert f"name: drgdip-{service}" in (REPO / "deploy/k8s/drgdip.yaml").read_text()


def test_settings_fail_fast_on_bad_values() -> None:
    from pydantic import ValidationError

    from services.grouper.config import GrouperSettings

    with pytest.raises(ValidationError, match="bus"):
        GrouperSettings(bus="amqp://x")
    with pytest.raises(ValidationError, match="code_mode"):
        GrouperSettings(code_mode="fuzzy")
    with pytest.raises(ValidationError, match="db"):
        GrouperSettings(db="mysql://x")
