"""Settings read from `DRGDIP_*` environment variables: what every service needs. Each service
adds its own in `services/<name>/config.py`.

Bad values stop the service at start-up with pydantic's message naming the variable
(`describe` puts it on one line). The same names are used by the CLI flags, docker-compose.yml
and the k8s manifests.

Secrets (`private_settings`) ship with public defaults so that the development environment needs
no setup; outside it (`DRGDIP_ENVIRONMENT=production`) a secret left unset, at its default or at a
shipped placeholder (`change-me…`) stops the service at start-up.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, ClassVar, Final, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT: Final = "development"
# The development value of the service credential; every secret's default is public.
DEV_SERVICE_TOKEN = "drgdip-dev-service-token"
PLACEHOLDER = "change-me"  # the values shipped in docker-compose.yml and deploy/k8s


class SettingError(Exception):
    """A setting the service cannot start with (a folder without schemes, an unreadable file,
    a database or broker that does not answer): `drgdip serve` prints it on one line."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


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
    topic_replication: int = Field(
        1, ge=1, le=16,
        description="replication factor of a topic a service creates because it is missing (3 on a "
                    "production cluster; topics the cluster already has keep theirs)")
    max_attempts: int = Field(5, ge=1, le=100, description="tries before a message is dead-lettered")
    retry_backoff_ms: int = Field(200, ge=0, le=60_000,
                                  description="wait after an event failed by its content (times the attempt)")
    transient_retry_ms: int = Field(
        200, ge=1, le=60_000,
        description="first wait before work that failed because the database was away is tried "
                    "again (doubling each time up to DRGDIP_TRANSIENT_RETRY_MAX_MS; never dead-lettered)")
    transient_retry_max_ms: int = Field(10_000, ge=1, le=600_000,
                                        description="longest wait between two such tries")
    fetch_max_records: int = Field(1000, ge=1, le=10_000, description="events a stage applies in one transaction")
    fetch_linger_ms: int = Field(
        50, ge=0, le=10_000,
        description="how long a stage waits for more events after a short fetch: bigger batches, "
                    "fewer transactions (0: apply at once)",
    )
    relay_interval_ms: int = Field(200, ge=10, le=60_000)
    gc_threshold: int = Field(
        1_000_000, ge=0, le=10_000_000,
        description="net new objects between two collections of the garbage collector's youngest "
                    "generation. A stage's batch holds thousands of young objects at once, so each "
                    "young collection walks them all: at 20,000 the embedded pipeline spent about "
                    "85 µs a case collecting, at 1,000,000 none in a 10,000-list run, for about "
                    "50 MB more at the peak (0: Python's default, 700)")
    kafka_batch_bytes: int = Field(
        256 * 1024, ge=1024, le=1_000_000,
        description="Kafka: bytes of events per partition in one produce batch (fewer, larger requests)")
    kafka_fetch_min_bytes: int = Field(
        64 * 1024, ge=1, le=10_000_000,
        description="Kafka: bytes a consumer's fetch waits for (up to DRGDIP_KAFKA_FETCH_MAX_WAIT_MS): "
                    "fewer fetches under a trickle of events, for the broker and the stage")
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=0, le=10_000,
        description="Kafka: longest a fetch waits for DRGDIP_KAFKA_FETCH_MIN_BYTES (the latency it "
                    "adds to each stage when events are few)")
    lag_interval_ms: int = Field(5000, ge=50, le=600_000,
                                 description="how often each stage reads its consumer lag from the bus")
    instance_id: str | None = Field(None, description="static group membership id (Kafka)")
    namespace: str = Field(
        "", pattern=r"^[a-z0-9._-]*$", max_length=40,
        description="prefix of topic and consumer-group names: several environments on one cluster",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    environment: Literal["development", "production"] = Field(
        DEVELOPMENT,
        description="development: secrets may keep their public defaults (a warning at start); "
                    "production: a secret at a public default stops the service at start",
    )
    service_token: SecretStr = Field(
        SecretStr(DEV_SERVICE_TOKEN),
        description="distributed mode: the credential the gateway sends to ingest, grouper and "
                    "pricer (header x-drgdip-service-token); the same private value on every service",
    )

    # The secrets whose public default (or shipped placeholder) is refused outside development.
    private_settings: ClassVar[tuple[str, ...]] = ("service_token",)

    def public_secrets(self) -> list[str]:
        """The environment names of the secrets left unset, at a public default or a placeholder."""
        out = []
        for name in self.private_settings:
            value = _plain(getattr(self, name))
            default = _plain(type(self).model_fields[name].default)
            if not value.strip() or value == default or PLACEHOLDER in value:
                out.append(env_name(type(self), name))
        return out

    @model_validator(mode="after")
    def _private_secrets_outside_development(self) -> ServiceSettings:
        if self.environment != DEVELOPMENT and (names := self.public_secrets()):
            raise ValueError(
                f"{', '.join(names)} unset or at a public default: set a private value "
                f"(DRGDIP_ENVIRONMENT={self.environment})")
        return self

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
    return {env_name(cls, name) for name in cls.model_fields}


def env_name(cls: type[ServiceSettings], field: str) -> str:
    return (cls.model_config.get("env_prefix", "") + field).upper()


def describe(error: ValidationError, cls: type[ServiceSettings] = ServiceSettings) -> str:
    """A settings error on one line, each problem named by its environment variable."""
    parts = []
    for e in error.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["loc"]:
            field = str(e["loc"][0])
            secret = field in cls.private_settings or "secret" in field or "token" in field
            shown = "" if secret or isinstance(e.get("input"), dict) else f" (got {_shown(e.get('input'))})"
            parts.append(f"{env_name(cls, field)}: {msg}{shown}")
        else:
            parts.append(msg)
    return "; ".join(parts)


def _plain(value: Any) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")


def _shown(value: Any) -> str:
    text = repr(str(value) if isinstance(value, PurePath) else value)
    return text if len(text) <= 60 else text[:57] + "..."
