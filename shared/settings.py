"""Settings read from `DRGDIP_*` environment variables: what every service needs. Each service
adds its own in `services/<name>/config.py`.

Bad values stop the service at start-up with pydantic's message naming the variable.
The same names are used by the CLI flags, docker-compose.yml and the k8s manifests.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs: where the bus and its database are, how to behave on failure."""

    model_config = SettingsConfigDict(env_prefix="DRGDIP_", extra="ignore", frozen=True)

    bus: str = Field("memory://", description="memory:// (embedded) or kafka://HOST:PORT[,HOST:PORT]")
    db: str = Field(
        "sqlite+aiosqlite:///var/drgdip.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///FILE or postgresql+asyncpg://…",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    partitions: int = Field(6, ge=1, le=256, description="partitions per topic when creating topics")
    max_attempts: int = Field(5, ge=1, le=100, description="tries before a message is dead-lettered")
    retry_backoff_ms: int = Field(200, ge=0, le=60_000)
    fetch_max_records: int = Field(1000, ge=1, le=10_000, description="events a stage applies in one transaction")
    fetch_linger_ms: int = Field(
        50, ge=0, le=10_000,
        description="how long a stage waits for more events after a short fetch: bigger batches, "
                    "fewer transactions (0: apply at once)",
    )
    relay_interval_ms: int = Field(200, ge=10, le=60_000)
    instance_id: str | None = Field(None, description="static group membership id (Kafka)")
    namespace: str = Field(
        "", pattern=r"^[a-z0-9._-]*$", max_length=40,
        description="prefix of topic and consumer-group names: several environments on one cluster",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("bus")
    @classmethod
    def _bus_scheme(cls, v: str) -> str:
        if not (v.startswith("memory://") or v.startswith("kafka://")):
            raise ValueError("must start with memory:// or kafka://")
        if v.startswith("kafka://") and not v.removeprefix("kafka://"):
            raise ValueError("kafka:// needs HOST:PORT")
        return v

    @field_validator("db")
    @classmethod
    def _db_driver(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("must be sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST:PORT/DB")
        return v


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Settings from the environment, with the given values (CLI flags) taking precedence."""
    return cls(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def env_names(cls: type[ServiceSettings]) -> set[str]:
    """The environment variable names a settings class reads."""
    prefix = cls.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in cls.model_fields}
