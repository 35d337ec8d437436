"""Grouper's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import DirectoryPath, Field

from shared.settings import ServiceSettings


class GrouperSettings(ServiceSettings):
    schemes_dir: DirectoryPath | None = Field(
        None, description="folder of scheme folders to import at start (e.g. ../shared/schemes)"
    )
    local_schemes_dir: Path | None = Field(
        Path("var/local-schemes"), description="folder where schemes built from change sets (POST "
        "/changesets:build) are written, and loaded from at start; created when missing (beside the "
        "embedded database by default; several grouper processes need it on storage they share)")
    default_scheme: str = Field("chs-drg-1.1", description="scheme for regions with no registration")
    code_mode: Literal["raw", "mapped"] = "raw"
