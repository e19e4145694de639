"""GATEWAY_WEBHOOKS_* settings: defaults, overrides, and refusals of nonsense."""

from __future__ import annotations

import pytest
from servicekit.config import ConfigError

from services.gateway.config import ClientWebhookSettings


def test_defaults_refuse_private_addresses(monkeypatch):
    for name in (
        "GATEWAY_WEBHOOKS_ALLOW_PRIVATE",
        "GATEWAY_WEBHOOKS_MAX_ATTEMPTS",
        "GATEWAY_WEBHOOKS_CONSUMER",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = ClientWebhookSettings.from_env()
    assert settings.allow_private is False
    assert settings.consumer == "gateway-client-webhooks" and settings.max_attempts == 10


def test_every_setting_comes_from_the_environment(monkeypatch):
    values = {
        "GATEWAY_WEBHOOKS_ALLOW_PRIVATE": "true",
        "GATEWAY_WEBHOOKS_MAX_ATTEMPTS": "3",
        "GATEWAY_WEBHOOKS_TIMEOUT_SECONDS": "2.5",
        "GATEWAY_WEBHOOKS_RETRY_BASE_SECONDS": "0.5",
        "GATEWAY_WEBHOOKS_RETRY_MAX_SECONDS": "30",
        "GATEWAY_WEBHOOKS_CONCURRENCY": "4",
        "GATEWAY_WEBHOOKS_POLL_SECONDS": "0.25",
        "GATEWAY_WEBHOOKS_CONSUMER": "hooks-eu",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert ClientWebhookSettings.from_env() == ClientWebhookSettings(
        allow_private=True,
        max_attempts=3,
        timeout_seconds=2.5,
        retry_base_seconds=0.5,
        retry_max_seconds=30,
        concurrency=4,
        poll_seconds=0.25,
        consumer="hooks-eu",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_WEBHOOKS_MAX_ATTEMPTS", "0"),
        ("GATEWAY_WEBHOOKS_TIMEOUT_SECONDS", "-1"),
        ("GATEWAY_WEBHOOKS_ALLOW_PRIVATE", "maybe"),
        ("GATEWAY_WEBHOOKS_CONSUMER", "hooks.*"),  # not a valid durable name
    ],
)
def test_nonsense_is_refused_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        ClientWebhookSettings.from_env()
