"""Gateway's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings

# where scripts/install-web.sh puts the dashboard's chart library in a checkout
DEFAULT_WEB_ASSETS = Path(__file__).resolve().parents[2] / ".cache" / "web"


class GatewaySettings(ServiceSettings):
    ingest_url: str = Field("http://127.0.0.1:8001", description="ingest service base URL")
    grouper_url: str = Field("http://127.0.0.1:8002", description="grouper service base URL")
    pricer_url: str = Field("http://127.0.0.1:8003", description="pricer service base URL")
    review_url: str = Field("http://127.0.0.1:8004", description="review service base URL")
    token_days: int = Field(
        90, ge=0, le=3650,
        description="default lifetime of a new API token in days (`drgdip token create --days`); 0: never expires")
    auth_max_failures: int = Field(
        10, ge=1, le=10_000,
        description="refused authentications from one client (IP) within the window before it gets 429")
    auth_failure_window_seconds: int = Field(
        300, ge=1, le=86_400, description="the window the refused authentications are counted in")
    max_body_bytes: int = Field(
        16 << 20, ge=64 << 10, le=512 << 20,
        description="largest request body the gateway reads (lists, policies, catalogues; 413 "
                    "beyond); bulk imports stream through, their lines bounded by ingest")
    indicator_near_threshold_band: Decimal = Field(
        Decimal("0.10"), ge=0, le=1,
        description="the near-threshold band (临界区) of the indicators: a case whose cost is above an "
                    "outlier threshold by at most this share of it counts as near; applies to cases "
                    "folded after a change")
    session_hours: int = Field(
        8, ge=1, le=24 * 30,
        description="lifetime of a dashboard sign-in (session cookie) in hours; never beyond its token's expiry")
    web_assets: Path = Field(
        DEFAULT_WEB_ASSETS,
        description="folder with the dashboard's chart library (echarts/echarts.min.js), put there by "
                    "scripts/install-web.sh (`make setup`) and served by the gateway itself")
    secure_cookies: bool = Field(
        False, description="mark the session cookie Secure (only sent over HTTPS); set it behind TLS")
