"""Secrets keep public defaults only in development: elsewhere a service refuses to start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drgdip.stages import EmbeddedSettings
from services.gateway.config import GatewaySettings
from services.grouper.config import GrouperSettings
from services.ingest.config import IngestSettings
from shared.settings import describe

PRIVATE = {"service_token": "a-private-service-token-0123456789", "psn_key_secret": "a-private-key-0123"}


@pytest.mark.parametrize("cls", [GatewaySettings, GrouperSettings, IngestSettings])
def test_production_refuses_the_default_service_token(cls) -> None:
    with pytest.raises(ValidationError) as e:
        cls(environment="production", psn_key_secret=PRIVATE["psn_key_secret"])
    assert "DRGDIP_SERVICE_TOKEN" in describe(e.value, cls)
    for placeholder in ("", "   ", "change-me-to-a-long-random-value"):
        with pytest.raises(ValidationError, match="DRGDIP_SERVICE_TOKEN"):
            cls(environment="production", service_token=placeholder,
                psn_key_secret=PRIVATE["psn_key_secret"])
    assert cls(environment="production", **PRIVATE).environment == "production"


def test_production_refuses_the_default_person_number_key() -> None:
    for key in (None, "change-me-to-a-private-value", "drgdip-dev-secret"):
        with pytest.raises(ValidationError) as e:
            IngestSettings(environment="production", service_token=PRIVATE["service_token"],
                           **({} if key is None else {"psn_key_secret": key}))
        line = describe(e.value, IngestSettings)
        assert "DRGDIP_PSN_KEY_SECRET" in line and "\n" not in line
        assert key is None or key not in line  # a secret is never echoed


def test_the_embedded_mode_needs_no_service_token_but_a_private_key() -> None:
    with pytest.raises(ValidationError, match="DRGDIP_PSN_KEY_SECRET"):
        EmbeddedSettings(environment="production")
    s = EmbeddedSettings(environment="production", psn_key_secret=PRIVATE["psn_key_secret"])
    assert s.public_secrets() == []


def test_development_accepts_the_defaults_and_names_them() -> None:
    s = IngestSettings()
    assert s.environment == "development"
    assert s.public_secrets() == ["DRGDIP_SERVICE_TOKEN", "DRGDIP_PSN_KEY_SECRET"]
    assert EmbeddedSettings().public_secrets() == ["DRGDIP_PSN_KEY_SECRET"]
    assert "a-private" not in repr(IngestSettings(**PRIVATE).service_token)


def test_the_environment_is_read_from_drgdip_environment(monkeypatch) -> None:
    monkeypatch.setenv("DRGDIP_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="DRGDIP_SERVICE_TOKEN"):
        GatewaySettings()
    monkeypatch.setenv("DRGDIP_SERVICE_TOKEN", PRIVATE["service_token"])
    assert GatewaySettings().service_token.get_secret_value() == PRIVATE["service_token"]
    monkeypatch.setenv("DRGDIP_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="environment"):
        GatewaySettings()


def test_bad_settings_are_described_on_one_line_by_their_variable() -> None:
    with pytest.raises(ValidationError) as e:
        GrouperSettings(bus="amqp://x", port=0, schemes_dir="/no/such/folder")
    line = describe(e.value, GrouperSettings)
    assert "\n" not in line
    assert line.startswith("DRGDIP_BUS: must start with memory:// or kafka://")
    assert "DRGDIP_PORT:" in line and "DRGDIP_SCHEMES_DIR:" in line and "'/no/such/folder'" in line
