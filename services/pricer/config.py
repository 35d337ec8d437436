"""Pricer's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from pydantic import Field, FilePath

from shared.settings import ServiceSettings


class PricerSettings(ServiceSettings):
    policy_file: FilePath | None = Field(None, description="pricing policy JSON imported at start")
