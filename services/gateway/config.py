from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from servicekit.config import ConfigError, env_bool, env_float, env_int, env_str
from servicekit.metrics import metrics_port_from_env
from servicekit.storage import S3Timeouts

from services.gateway.cors import CorsSettings
from services.gateway.jwt_tokens import JwtSettings


@dataclass(frozen=True)
class LiveSettings:
    """Live status events (SSE and WebSocket)."""

    # Comment lines (SSE) and pings (WebSocket) on quiet connections, so proxies keep them open.
    heartbeat_seconds: float = 15.0
    # Events a client may fall behind by before it is disconnected; it resumes by last event id.
    queue_events: int = 256
    # A client that takes no bytes for this long is cut off.
    write_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> LiveSettings:
        settings = cls(
            heartbeat_seconds=env_float("GATEWAY_LIVE_HEARTBEAT_SECONDS", cls.heartbeat_seconds),
            queue_events=env_int("GATEWAY_LIVE_QUEUE_EVENTS", cls.queue_events),
            write_timeout_seconds=env_float("GATEWAY_LIVE_WRITE_TIMEOUT_SECONDS", cls.write_timeout_seconds),
        )
        if min(settings.heartbeat_seconds, settings.queue_events, settings.write_timeout_seconds) <= 0:
            raise ConfigError("GATEWAY_LIVE_* settings must be greater than 0")
        return settings


@dataclass(frozen=True)
class ClientWebhookSettings:
    """Webhooks the gateway sends to clients (video.completed, video.failed, video.progress)."""

    # Private, loopback and link-local addresses are refused unless this is on (dev and test stacks).
    allow_private: bool = False
    # Tries per delivery before it is given up.
    max_attempts: int = 10
    # One POST, connecting included.
    timeout_seconds: float = 10.0
    # The wait before try n+1: base * 2^(n-1), capped, with jitter.
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    # Deliveries one replica sends at once.
    concurrency: int = 16
    # How often an idle replica looks for retries that fell due.
    poll_seconds: float = 1.0
    # The durable JetStream consumer the replicas share, so each status event is handled once.
    consumer: str = "gateway-client-webhooks"

    @classmethod
    def from_env(cls) -> ClientWebhookSettings:
        settings = cls(
            allow_private=env_bool("GATEWAY_WEBHOOKS_ALLOW_PRIVATE", cls.allow_private),
            max_attempts=env_int("GATEWAY_WEBHOOKS_MAX_ATTEMPTS", cls.max_attempts),
            timeout_seconds=env_float("GATEWAY_WEBHOOKS_TIMEOUT_SECONDS", cls.timeout_seconds),
            retry_base_seconds=env_float("GATEWAY_WEBHOOKS_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            retry_max_seconds=env_float("GATEWAY_WEBHOOKS_RETRY_MAX_SECONDS", cls.retry_max_seconds),
            concurrency=env_int("GATEWAY_WEBHOOKS_CONCURRENCY", cls.concurrency),
            poll_seconds=env_float("GATEWAY_WEBHOOKS_POLL_SECONDS", cls.poll_seconds),
            consumer=env_str("GATEWAY_WEBHOOKS_CONSUMER", cls.consumer),
        )
        numbers = (
            settings.max_attempts,
            settings.timeout_seconds,
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            settings.concurrency,
            settings.poll_seconds,
        )
        if min(numbers) <= 0:
            raise ConfigError("GATEWAY_WEBHOOKS_* numbers must be greater than 0")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", settings.consumer):
            raise ConfigError("GATEWAY_WEBHOOKS_CONSUMER must be 1-64 letters, digits, '_' or '-'")
        return settings


@dataclass(frozen=True)
class Settings:
    database_url: str
    jobs_address: str = "127.0.0.1:50051"
    renderer_address: str = "127.0.0.1:50054"
    billing_address: str = "127.0.0.1:50053"
    host: str = "127.0.0.1"
    port: int = 8080
    # When set, the dev user exists with this key (make run prints it).
    dev_api_key: str = ""
    # Four 10 MB reference images, base64-encoded in JSON, fit.
    max_body_bytes: int = 64 * 1024 * 1024
    # Slow clients (slowloris): a connection has this long from opening, or from its last answer,
    # to send a request's headers in full (idle keep-alive connections close after it too); a body
    # is refused with 408 when no byte of it comes for `body_idle_seconds`, or it is not all there
    # `body_deadline_seconds` after the handler started.
    idle_timeout_seconds: float = 75.0
    body_idle_seconds: float = 30.0
    body_deadline_seconds: float = 600.0
    shutdown_seconds: float = 10.0
    # /metrics port; 0 (off) unless set, so tests and benchmarks never fight over 9464.
    metrics_port: int = 0
    # Deployment name -> whsec_ secret; each gets POST /webhooks/providers/<name>.
    provider_webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Requests per minute per API key (or JWT user) when the key sets none; 0: unlimited.
    default_requests_per_minute: int = 3000
    cors: CorsSettings = field(default_factory=CorsSettings)
    # None: only API keys authenticate.
    jwt: JwtSettings | None = None
    # NATS with JetStream, source of live status events; empty turns the live routes off (503).
    nats_url: str = ""
    live: LiveSettings = field(default_factory=LiveSettings)
    client_webhooks: ClientWebhookSettings = field(default_factory=ClientWebhookSettings)
    # Downloads read media from S3 through presigned URLs, waiting as long as the S3 clients do.
    storage_timeouts: S3Timeouts = field(default_factory=S3Timeouts)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
            jobs_address=env_str("JOBS_ADDRESS", cls.jobs_address),
            renderer_address=env_str("RENDERER_ADDRESS", cls.renderer_address),
            billing_address=env_str("BILLING_ADDRESS", cls.billing_address),
            host=env_str("GATEWAY_HOST", cls.host),
            port=env_int("GATEWAY_PORT", cls.port),
            dev_api_key=env_str("VIDFLOW_DEV_API_KEY", ""),
            max_body_bytes=env_int("GATEWAY_MAX_BODY_BYTES", cls.max_body_bytes),
            idle_timeout_seconds=_positive(
                "GATEWAY_IDLE_TIMEOUT_SECONDS",
                env_float("GATEWAY_IDLE_TIMEOUT_SECONDS", cls.idle_timeout_seconds),
            ),
            body_idle_seconds=_positive(
                "GATEWAY_BODY_IDLE_SECONDS", env_float("GATEWAY_BODY_IDLE_SECONDS", cls.body_idle_seconds)
            ),
            body_deadline_seconds=_positive(
                "GATEWAY_BODY_DEADLINE_SECONDS",
                env_float("GATEWAY_BODY_DEADLINE_SECONDS", cls.body_deadline_seconds),
            ),
            shutdown_seconds=env_float("GATEWAY_SHUTDOWN_SECONDS", cls.shutdown_seconds),
            metrics_port=metrics_port_from_env(),
            provider_webhook_secrets=_webhook_secrets(env_str("PROVIDER_WEBHOOK_SECRETS", "")),
            default_requests_per_minute=_not_negative(
                "GATEWAY_DEFAULT_RPM", env_int("GATEWAY_DEFAULT_RPM", cls.default_requests_per_minute)
            ),
            cors=CorsSettings.from_env(),
            jwt=JwtSettings.from_env(),
            nats_url=env_str("NATS_URL"),
            live=LiveSettings.from_env(),
            client_webhooks=ClientWebhookSettings.from_env(),
            storage_timeouts=S3Timeouts(
                connect_seconds=env_float("S3_CONNECT_TIMEOUT_SECONDS", S3Timeouts.connect_seconds),
                read_seconds=env_float("S3_READ_TIMEOUT_SECONDS", S3Timeouts.read_seconds),
            ),
        )


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def _not_negative(name: str, value: int) -> int:
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more")
    return value


def _webhook_secrets(raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        secrets = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError("PROVIDER_WEBHOOK_SECRETS must be a JSON object") from None
    if not isinstance(secrets, dict) or not all(
        isinstance(name, str) and isinstance(secret, str) and secret.startswith("whsec_")
        for name, secret in secrets.items()
    ):
        raise ConfigError('PROVIDER_WEBHOOK_SECRETS must look like {"deployment": "whsec_..."}')
    return secrets
