from __future__ import annotations

from pathlib import Path

import pytest
from servicekit.config import ConfigError

from simulator.config import Settings


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.api_key) == ("127.0.0.1", 8090, "")
    assert (settings.generation_seconds, settings.asset_ttl_seconds, settings.fps) == (10.0, 3600, 24)
    assert settings.data_dir is None and settings.ffmpeg_exe is None


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "SIMULATOR_HOST": "0.0.0.0",
            "SIMULATOR_PORT": "9000",
            "SIMULATOR_API_KEY": "sk-x",
            "SIMULATOR_GENERATION_SECONDS": "0.5",
            "SIMULATOR_ASSET_TTL_SECONDS": "60",
            "SIMULATOR_DATA_DIR": "/var/tmp/sim",
            "SIMULATOR_FPS": "30",
            "SIMULATOR_MAX_CONCURRENT_RENDERS": "3",
            "SIMULATOR_RENDER_TIMEOUT_SECONDS": "20",
            "SIMULATOR_FFMPEG": "/usr/bin/ffmpeg",
        }
    )
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        api_key="sk-x",
        generation_seconds=0.5,
        asset_ttl_seconds=60,
        data_dir=Path("/var/tmp/sim"),
        fps=30,
        max_concurrent_renders=3,
        render_timeout_seconds=20.0,
        ffmpeg_exe="/usr/bin/ffmpeg",
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"SIMULATOR_PORT": "http"},
        {"SIMULATOR_PORT": "70000"},
        {"SIMULATOR_GENERATION_SECONDS": "-1"},
        {"SIMULATOR_FPS": "0"},
        {"SIMULATOR_MAX_CONCURRENT_RENDERS": "0"},
    ],
)
def test_bad_values_fail_at_start_up(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(environ)
