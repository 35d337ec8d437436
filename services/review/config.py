"""Review's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class ReviewSettings(ServiceSettings):
    """Review needs only what every service does (its rules' parameters come with policies)."""
