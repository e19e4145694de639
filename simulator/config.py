"""Simulator settings, read once from the environment and then frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.config import ConfigError, env_float, env_int, env_str


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
