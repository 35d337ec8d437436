"""Ingest's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import DirectoryPath, Field

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    private_settings: ClassVar[tuple[str, ...]] = ("service_token", "psn_key_secret")

    dictionary_scheme: DirectoryPath | None = Field(
        None, description="scheme folder whose diagnoses.tsv/procedures.tsv the code checks use")
    psn_key_secret: str = Field(
        "drgdip-dev-secret",
        min_length=8,
        description="key for hashing person numbers (the pseudonym); a private value outside "
                    "development, else the service refuses to start",
    )
