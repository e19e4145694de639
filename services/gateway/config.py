from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from servicekit.config import ConfigError, env_float, env_int, env_str


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
    shutdown_seconds: float = 10.0
    # Deployment name -> whsec_ secret; each gets POST /webhooks/providers/<name>.
    provider_webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

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
            shutdown_seconds=env_float("GATEWAY_SHUTDOWN_SECONDS", cls.shutdown_seconds),
            provider_webhook_secrets=_webhook_secrets(env_str("PROVIDER_WEBHOOK_SECRETS", "")),
        )


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
