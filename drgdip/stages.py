"""Which stage factories make up each service (the composition root's table)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from services.gateway.app import build as gateway
from services.gateway.config import GatewaySettings
from services.grouper.app import build as grouper
from services.grouper.config import GrouperSettings
from services.ingest.app import build as ingest
from services.ingest.config import IngestSettings
from services.pricer.app import build as pricer
from services.pricer.config import PricerSettings
from services.review.app import build as review
from services.review.config import ReviewSettings
from shared.runtime import Runtime, StageFactory
from shared.settings import ServiceSettings, load_settings

SETTINGS_BY_SERVICE: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings, "grouper": GrouperSettings, "pricer": PricerSettings,
    "review": ReviewSettings, "gateway": GatewaySettings,
}
FACTORIES: dict[str, StageFactory] = {
    "ingest": ingest, "grouper": grouper, "pricer": pricer, "review": review, "gateway": gateway,
}


class EmbeddedSettings(IngestSettings, GrouperSettings, PricerSettings, ReviewSettings, GatewaySettings):
    """All five services in one process: every service's settings in one object."""

    model_config = SettingsConfigDict(env_prefix="DRGDIP_", extra="ignore", frozen=True)
    # no service credential in one process: the internal routes are not served at all
    private_settings: ClassVar[tuple[str, ...]] = ("psn_key_secret",)


def build_runtime(service: str, **overrides: object) -> Runtime:
    """`service` is one of the five, or "all" for the embedded mode (every stage, one process)."""
    if service == "all":
        return Runtime(load_settings(EmbeddedSettings, **overrides), list(FACTORIES.values()),
                       embedded=True)
    return Runtime(load_settings(SETTINGS_BY_SERVICE[service], **overrides), [FACTORIES[service]])
