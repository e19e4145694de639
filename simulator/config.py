"""Simulator settings, read once from the environment and then frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.config import ConfigError, env_float, env_int, env_str
from servicekit.webhooks import decode_secret

from simulator.chaos import ChaosConfigError, ChaosSettings, parse_terms


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8090
    # Empty means "no authentication": any or no bearer token is accepted.
    api_key: str = ""
    # Wall time from create to completed, whatever the clip length; renders finish well within it.
    generation_seconds: float = 10.0
    asset_ttl_seconds: int = 3600
    # None means a temporary directory that is removed at shutdown.
    data_dir: Path | None = None
    fps: int = 24
    max_concurrent_renders: int = 2
    render_timeout_seconds: float = 120.0
    # None means the static ffmpeg bundled with imageio-ffmpeg.
    ffmpeg_exe: str | None = None
    # Empty means no webhooks. The secret is a Standard Webhooks `whsec_<base64>` secret.
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_max_attempts: int = 6
    webhook_retry_base_seconds: float = 1.0
    webhook_timeout_seconds: float = 10.0
    # All chaos is off by default; `PUT /_chaos` replaces these at runtime.
    chaos: ChaosSettings = field(default_factory=ChaosSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        data_dir = env_str("SIMULATOR_DATA_DIR", "", environ=environ)
        settings = cls(
            host=env_str("SIMULATOR_HOST", cls.host, environ=environ),
            port=env_int("SIMULATOR_PORT", cls.port, environ=environ),
            api_key=env_str("SIMULATOR_API_KEY", "", environ=environ),
            generation_seconds=env_float(
                "SIMULATOR_GENERATION_SECONDS", cls.generation_seconds, environ=environ
            ),
            asset_ttl_seconds=env_int("SIMULATOR_ASSET_TTL_SECONDS", cls.asset_ttl_seconds, environ=environ),
            data_dir=Path(data_dir) if data_dir else None,
            fps=env_int("SIMULATOR_FPS", cls.fps, environ=environ),
            max_concurrent_renders=env_int(
                "SIMULATOR_MAX_CONCURRENT_RENDERS", min(4, os.cpu_count() or 1), environ=environ
            ),
            render_timeout_seconds=env_float(
                "SIMULATOR_RENDER_TIMEOUT_SECONDS", cls.render_timeout_seconds, environ=environ
            ),
            ffmpeg_exe=env_str("SIMULATOR_FFMPEG", "", environ=environ) or None,
            webhook_url=env_str("SIMULATOR_WEBHOOK_URL", "", environ=environ),
            webhook_secret=env_str("SIMULATOR_WEBHOOK_SECRET", "", environ=environ),
            webhook_max_attempts=env_int(
                "SIMULATOR_WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts, environ=environ
            ),
            webhook_retry_base_seconds=env_float(
                "SIMULATOR_WEBHOOK_RETRY_BASE_SECONDS", cls.webhook_retry_base_seconds, environ=environ
            ),
            webhook_timeout_seconds=env_float(
                "SIMULATOR_WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout_seconds, environ=environ
            ),
            chaos=_chaos_from_env(environ),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"SIMULATOR_PORT must be 0..65535, got {self.port}")
        if self.generation_seconds < 0:
            raise ConfigError("SIMULATOR_GENERATION_SECONDS must not be negative")
        if self.asset_ttl_seconds < 0:
            raise ConfigError("SIMULATOR_ASSET_TTL_SECONDS must not be negative")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"SIMULATOR_FPS must be 1..120, got {self.fps}")
        if self.max_concurrent_renders < 1:
            raise ConfigError("SIMULATOR_MAX_CONCURRENT_RENDERS must be at least 1")
        if self.render_timeout_seconds <= 0:
            raise ConfigError("SIMULATOR_RENDER_TIMEOUT_SECONDS must be positive")
        if self.webhook_url:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise ConfigError("SIMULATOR_WEBHOOK_URL must be an http(s) URL")
            try:
                decode_secret(self.webhook_secret)
            except ValueError as exc:
                raise ConfigError(
                    f"SIMULATOR_WEBHOOK_SECRET is required with SIMULATOR_WEBHOOK_URL: {exc}"
                ) from exc
        if self.webhook_max_attempts < 1:
            raise ConfigError("SIMULATOR_WEBHOOK_MAX_ATTEMPTS must be at least 1")
        if self.webhook_retry_base_seconds < 0 or self.webhook_timeout_seconds <= 0:
            raise ConfigError(
                "SIMULATOR_WEBHOOK_RETRY_BASE_SECONDS must not be negative and "
                "SIMULATOR_WEBHOOK_TIMEOUT_SECONDS must be positive"
            )
        try:
            self.chaos.check()
        except ChaosConfigError as exc:
            raise ConfigError(f"SIMULATOR_CHAOS_*: {exc}") from exc


def _chaos_from_env(environ: Mapping[str, str] | None) -> ChaosSettings:
    defaults = ChaosSettings()
    seed = env_str("SIMULATOR_CHAOS_SEED", "", environ=environ)
    try:
        seed_value = int(seed) if seed else None
    except ValueError as exc:
        raise ConfigError(f"SIMULATOR_CHAOS_SEED must be an integer, got {seed!r}") from exc

    def probability(name: str) -> float:
        return env_float(f"SIMULATOR_CHAOS_{name.upper()}", 0.0, environ=environ)

    return ChaosSettings(
        seed=seed_value,
        rate_limit=probability("rate_limit"),
        retry_after_ms=env_int("SIMULATOR_CHAOS_RETRY_AFTER_MS", defaults.retry_after_ms, environ=environ),
        server_error=probability("server_error"),
        unavailable=probability("unavailable"),
        slow=probability("slow"),
        slow_ms=env_int("SIMULATOR_CHAOS_SLOW_MS", defaults.slow_ms, environ=environ),
        drop=probability("drop"),
        fail_job=probability("fail_job"),
        refuse_terms=parse_terms(env_str("SIMULATOR_CHAOS_REFUSE_TERMS", "", environ=environ)),
        early_expiry=probability("early_expiry"),
        early_expiry_seconds=env_float(
            "SIMULATOR_CHAOS_EARLY_EXPIRY_SECONDS", defaults.early_expiry_seconds, environ=environ
        ),
    )
