"""Pure tests: JWT identity mapping and settings, CORS settings, rate-limit headers, config parsing."""

from __future__ import annotations

import math
import re

import pytest
from servicekit.config import ConfigError
from servicekit.token_bucket import Take

from services.gateway.config import Settings
from services.gateway.cors import CorsSettings
from services.gateway.identity import Principal
from services.gateway.jwt_tokens import (
    JwtSettings,
    display_name,
    looks_like_jwt,
    role_from,
    user_id_for,
)
from services.gateway.rate_limits import RateLimitState, bucket_of, duration_text

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JWT_ENV = {
    "JWT_ISSUER": "https://idp.example",
    "JWT_AUDIENCE": "vidflow",
    "JWT_JWKS_URL": "https://idp.example/jwks",
}


@pytest.mark.parametrize(
    "subject",
    [
        "alice",
        "a.b@example.com",
        "auth0|5f7c8ec7",
        "../../etc/passwd",
        "jobs.v1.>",
        "*",
        "名前",
        "x" * 5000,
        "",
    ],
)
def test_user_ids_from_any_subject_are_safe_for_subjects_keys_and_columns(subject):
    user_id = user_id_for("https://idp.example", subject)
    assert SAFE_ID.match(user_id) and user_id.startswith("user_")
    assert user_id == user_id_for("https://idp.example", subject)  # stable across requests and replicas


def test_equal_subjects_of_different_issuers_are_different_users():
    assert user_id_for("https://a.example", "42") != user_id_for("https://b.example", "42")
    # The pair is encoded unambiguously: moving characters between issuer and subject changes the id.
    assert user_id_for("https://a.example/", "x") != user_id_for("https://a.example", "/x")


@pytest.mark.parametrize(
    "claims, role",
    [
        ({"vidflow_role": "admin"}, "admin"),
        ({"vidflow_role": ["viewer", "admin"]}, "admin"),
        ({"vidflow_role": "Admin"}, "user"),
        ({"vidflow_role": "superuser"}, "user"),
        ({"role": "admin"}, "user"),  # not the configured claim
        ({}, "user"),
    ],
)
def test_the_role_comes_from_the_configured_claim_and_defaults_to_user(claims, role):
    assert role_from(claims, "vidflow_role") == role


def test_display_names_are_printable_and_bounded():
    assert display_name({"name": "Ada\x00 Lovelace\ud800"}, "sub") == "Ada Lovelace"
    assert display_name({"email": "ada@example.com"}, "sub") == "ada@example.com"
    assert display_name({"name": 7}, "sub-1") == "sub-1"
    assert len(display_name({"name": "n" * 1000}, "s")) == 200
    assert display_name({}, "\x01\x02") == "external user"


@pytest.mark.parametrize(
    "token, expected",
    [("a.b.c", True), ("vf_abc", False), ("a.b", False), ("a..c", False), ("a.b.c.d", False)],
)
def test_only_three_part_tokens_are_tried_as_jwts(token, expected):
    assert looks_like_jwt(token) is expected


def test_jwt_settings_come_from_the_environment_all_or_nothing():
    assert JwtSettings.from_env({}) is None
    settings = JwtSettings.from_env({**JWT_ENV, "JWT_ALGORITHMS": "ES256", "JWT_LEEWAY_SECONDS": "5"})
    assert settings is not None
    assert (settings.algorithms, settings.leeway_seconds, settings.role_claim) == (
        ("ES256",),
        5.0,
        "vidflow_role",
    )
    with pytest.raises(ConfigError, match="JWT_AUDIENCE"):
        JwtSettings.from_env(
            {"JWT_ISSUER": "https://idp.example", "JWT_JWKS_URL": "https://idp.example/jwks"}
        )


@pytest.mark.parametrize("algorithms", ["none", "HS256", "RS256,HS256", "RS256,none", ","])
def test_symmetric_and_none_algorithms_are_refused_at_start(algorithms):
    with pytest.raises(ConfigError, match="JWT_ALGORITHMS"):
        JwtSettings.from_env({**JWT_ENV, "JWT_ALGORITHMS": algorithms})


def test_the_jwks_url_must_be_http():
    with pytest.raises(ConfigError, match="JWT_JWKS_URL"):
        JwtSettings.from_env({**JWT_ENV, "JWT_JWKS_URL": "file:///etc/keys.json"})


def test_cors_settings():
    assert not CorsSettings().enabled
    settings = CorsSettings.from_env({"GATEWAY_CORS_ORIGINS": "https://App.example/, http://localhost:5173"})
    assert settings.origins == ("https://app.example", "http://localhost:5173")
    assert settings.allowed_origin("https://app.example") == "https://app.example"
    assert settings.allowed_origin("http://localhost:5173") == "http://localhost:5173"
    assert settings.allowed_origin("https://evil.example") is None
    assert settings.allowed_origin("https://app.example.evil.example") is None
    assert settings.allowed_origin(None) is None
    anyone = CorsSettings.from_env({"GATEWAY_CORS_ORIGINS": "*"})
    assert anyone.allowed_origin("https://whoever.example") == "*"


def test_cors_refuses_any_origin_with_credentials_and_junk_origins():
    with pytest.raises(ConfigError, match="cannot be combined"):
        CorsSettings.from_env({"GATEWAY_CORS_ORIGINS": "*", "GATEWAY_CORS_ALLOW_CREDENTIALS": "true"})
    assert CorsSettings.from_env(
        {"GATEWAY_CORS_ORIGINS": "https://app.example", "GATEWAY_CORS_ALLOW_CREDENTIALS": "true"}
    ).allow_credentials
    for junk in ("app.example", "https://app.example/path", "https://*.example", "null"):
        with pytest.raises(ConfigError, match="not an origin"):
            CorsSettings.from_env({"GATEWAY_CORS_ORIGINS": junk})


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0, "0ms"), (0.0004, "1ms"), (0.85, "850ms"), (1.0, "1s"), (12.2, "13s"), (90, "1m30s")],
)
def test_reset_times_are_spelled_like_openai(seconds, text):
    assert duration_text(seconds) == text


def test_rate_limit_headers_and_retry_after():
    refused = RateLimitState(3, Take(False, 0.25, capacity=3, per_second=3 / 60))
    assert refused.retry_after_seconds == 15  # 0.75 of a token at one token per 20 s
    assert refused.headers() == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "55s",
    }
    almost = RateLimitState(600, Take(False, 0.999, capacity=600, per_second=10))
    assert almost.retry_after_seconds == 1  # never 0: "retry now" would be a lie
    taken = Take(True, 2.5, capacity=3, per_second=1)
    assert (taken.whole_tokens, taken.retry_after_seconds, taken.seconds_to_full) == (2, 0.0, 0.5)
    assert math.isinf(Take(False, 0.5, capacity=1, per_second=0).retry_after_seconds)


def test_keys_have_their_own_bucket_and_jwt_users_theirs():
    assert bucket_of(Principal("user_a", "user", "key_0123456789abcdef")) == "key_0123456789abcdef"
    assert bucket_of(Principal("user_a", "user")) == "user:user_a"


def test_gateway_settings_read_the_new_variables(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("GATEWAY_DEFAULT_RPM", "120")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://app.example")
    for name, value in JWT_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.default_requests_per_minute == 120
    assert settings.cors.origins == ("https://app.example",)
    assert settings.jwt is not None and settings.jwt.issuer == "https://idp.example"
    monkeypatch.setenv("GATEWAY_DEFAULT_RPM", "-1")
    with pytest.raises(ConfigError, match="GATEWAY_DEFAULT_RPM"):
        Settings.from_env()
