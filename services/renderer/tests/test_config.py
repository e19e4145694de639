from __future__ import annotations

import pytest

from services.renderer.config import Settings

REQUIRED = {
    "DATABASE_URL": "postgresql://renderer@db/vidflow",
    "S3_ENDPOINT": "http://s3:8333",
    "S3_ACCESS_KEY": "key",
    "S3_SECRET_KEY": "secret",
}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("S3_REGION", "S3_BUCKET", "GRPC_LISTEN_ADDRESS", "RENDERER_URL_TTL_SECONDS",
                 "RENDERER_MAX_SOURCE_BYTES", "GRPC_DRAIN_SECONDS", "RENDERER_MAX_REFERENCE_BYTES",
                 "RENDERER_MAX_REFERENCE_PIXELS", "RENDERER_REFERENCE_SWEEP_SECONDS",
                 "RENDERER_REFERENCE_DECODES"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.s3.region == "us-east-1"
    assert settings.s3.bucket == "vidflow-media"
    assert settings.grpc_listen_address == "127.0.0.1:50054"
    assert settings.url_ttl_seconds == 300
    assert settings.max_source_bytes == 2 * 1024**3
    assert settings.max_reference_bytes == 10 * 1024 * 1024
    assert settings.max_reference_pixels == 40_000_000
    assert settings.reference_sweep_seconds == 600
    assert settings.reference_decodes == 2


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        **REQUIRED,
        "RENDERER_URL_TTL_SECONDS": "60",
        "RENDERER_MAX_SOURCE_BYTES": "1000",
        "RENDERER_MAX_REFERENCE_BYTES": "2048",
        "RENDERER_MAX_REFERENCE_PIXELS": "1000000",
        "RENDERER_REFERENCE_SWEEP_SECONDS": "30",
        "RENDERER_REFERENCE_DECODES": "4",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.url_ttl_seconds, settings.max_source_bytes) == (60, 1000)
    assert (settings.max_reference_bytes, settings.max_reference_pixels) == (2048, 1_000_000)
    assert (settings.reference_sweep_seconds, settings.reference_decodes) == (30.0, 4)


def test_missing_database_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Settings.from_env()
