"""Gateway's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    ingest_url: str = Field("http://127.0.0.1:8001", description="ingest service base URL")
    grouper_url: str = Field("http://127.0.0.1:8002", description="grouper service base URL")
    pricer_url: str = Field("http://127.0.0.1:8003", description="pricer service base URL")

