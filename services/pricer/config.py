"""Pricer's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class PricerSettings(ServiceSettings):
    policy_file: Path | None = Field(None, description="pricing policy JSON imported at start")
