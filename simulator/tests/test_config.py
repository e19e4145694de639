from __future__ import annotations

from pathlib import Path

import pytest
from servicekit.config import ConfigError

from simulator.chaos import ChaosSettings
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


def test_webhook_and_chaos_variables_are_read() -> None:
    secret = "whsec_" + "A" * 44
    settings = Settings.from_env(
        {
            "SIMULATOR_WEBHOOK_URL": "http://127.0.0.1:9000/hooks",
            "SIMULATOR_WEBHOOK_SECRET": secret,
            "SIMULATOR_WEBHOOK_MAX_ATTEMPTS": "3",
            "SIMULATOR_WEBHOOK_RETRY_BASE_SECONDS": "0.25",
            "SIMULATOR_WEBHOOK_TIMEOUT_SECONDS": "2",
            "SIMULATOR_CHAOS_SEED": "7",
            "SIMULATOR_CHAOS_RATE_LIMIT": "0.1",
            "SIMULATOR_CHAOS_RETRY_AFTER_MS": "1500",
            "SIMULATOR_CHAOS_SERVER_ERROR": "0.2",
            "SIMULATOR_CHAOS_UNAVAILABLE": "0.3",
            "SIMULATOR_CHAOS_SLOW": "0.4",
            "SIMULATOR_CHAOS_SLOW_MS": "250",
            "SIMULATOR_CHAOS_DROP": "0.05",
            "SIMULATOR_CHAOS_FAIL_JOB": "0.5",
            "SIMULATOR_CHAOS_REFUSE_TERMS": "violence, gore",
            "SIMULATOR_CHAOS_EARLY_EXPIRY": "0.6",
            "SIMULATOR_CHAOS_EARLY_EXPIRY_SECONDS": "5",
        }
    )
    assert (settings.webhook_url, settings.webhook_secret) == ("http://127.0.0.1:9000/hooks", secret)
    assert (settings.webhook_max_attempts, settings.webhook_retry_base_seconds) == (3, 0.25)
    assert settings.webhook_timeout_seconds == 2.0
    assert settings.chaos == ChaosSettings(
        seed=7,
        rate_limit=0.1,
        retry_after_ms=1500,
        server_error=0.2,
        unavailable=0.3,
        slow=0.4,
        slow_ms=250,
        drop=0.05,
        fail_job=0.5,
        refuse_terms=("violence", "gore"),
        early_expiry=0.6,
        early_expiry_seconds=5.0,
    )


def test_chaos_and_webhooks_are_off_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_url == "" and settings.chaos == ChaosSettings()


@pytest.mark.parametrize(
    "environ",
    [
        {"SIMULATOR_CHAOS_RATE_LIMIT": "1.5"},
        {"SIMULATOR_CHAOS_SEED": "abc"},
        {"SIMULATOR_CHAOS_SLOW_MS": "-1"},
        {"SIMULATOR_WEBHOOK_MAX_ATTEMPTS": "0"},
        {"SIMULATOR_WEBHOOK_URL": "ftp://example", "SIMULATOR_WEBHOOK_SECRET": "whsec_AAAA"},
    ],
)
def test_bad_chaos_or_webhook_values_fail_at_start_up(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(environ)
