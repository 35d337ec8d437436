"""Ingest's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    dictionary_scheme: Path | None = Field(
        None, description="scheme folder whose diagnoses.tsv/procedures.tsv the code checks use")
    psn_key_secret: str = Field(
        "drgdip-dev-secret",
        min_length=8,
        description="key for hashing person numbers; set a private value in production",
    )
