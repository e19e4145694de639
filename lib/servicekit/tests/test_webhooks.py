"""Standard Webhooks signing and verification against independently computed signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from servicekit.webhooks import (
    WebhookVerificationError,
    decode_secret,
    headers_for,
    new_secret,
    sign,
    verify,
)

KEY = b"a thirty-two byte key for tests!"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
TIMESTAMP = 1_700_000_000
BODY = b'{"type":"video.completed","data":{"id":"video_123"}}'


def _reference_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The signature as the Standard Webhooks spec defines it, computed without the module."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def test_sign_matches_an_independent_computation() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == _reference_signature(KEY, MSG_ID, TIMESTAMP, BODY)


def test_sign_matches_the_standard_webhooks_published_vector() -> None:
    # The example from the standard-webhooks reference libraries' test suites.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_for_produces_verifiable_headers() -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP + 0.9)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": _reference_signature(KEY, MSG_ID, TIMESTAMP, BODY),
    }
    verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_header_names_are_case_insensitive() -> None:
    signed = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP)
    headers = {name.title(): value for name, value in signed.items()}
    verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_a_tampered_body_is_rejected() -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP)
    with pytest.raises(WebhookVerificationError, match="no matching webhook signature"):
        verify(SECRET, headers, BODY.replace(b"completed", b"failed"), now=TIMESTAMP)


def test_a_tampered_id_is_rejected() -> None:
    headers = {**headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP), "webhook-id": "msg_other"}
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_the_wrong_secret_is_rejected() -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP)
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify(new_secret(), headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("skew", "message"), [(-301, "too old"), (301, "too far in the future")], ids=["old", "future"]
)
def test_timestamps_outside_the_tolerance_are_rejected_both_ways(skew: int, message: str) -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP + skew)
    with pytest.raises(WebhookVerificationError, match=message):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamps_at_the_tolerance_edge_are_accepted(skew: int) -> None:
    verify(SECRET, headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP + skew), BODY, now=TIMESTAMP)


def test_the_tolerance_is_configurable() -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP - 20)
    verify(SECRET, headers, BODY, now=TIMESTAMP, tolerance_seconds=30)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, headers, BODY, now=TIMESTAMP, tolerance_seconds=10)


def test_any_matching_signature_is_accepted_for_key_rotation() -> None:
    old_secret = new_secret()
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP)
    rotated = {
        **headers,
        "webhook-signature": " ".join(
            [
                sign(old_secret, MSG_ID, TIMESTAMP, BODY),
                "v2,not-a-v1-signature",
                headers["webhook-signature"],
            ]
        ),
    }
    verify(SECRET, rotated, BODY, now=TIMESTAMP)
    verify(old_secret, rotated, BODY, now=TIMESTAMP)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), rotated, BODY, now=TIMESTAMP)


def test_a_signature_with_another_version_prefix_is_not_accepted() -> None:
    signature = _reference_signature(KEY, MSG_ID, TIMESTAMP, BODY).replace("v1,", "v1a,")
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": signature}
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_named_in_the_error(header: str) -> None:
    headers = headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP)
    del headers[header]
    with pytest.raises(WebhookVerificationError, match=f"missing webhook header.*{header}"):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_a_non_numeric_timestamp_is_rejected() -> None:
    headers = {**headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP), "webhook-timestamp": "yesterday"}
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_new_secrets_are_random_whsec_secrets_with_a_32_byte_key() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(decode_secret(first)) == 32


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!"])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(bad)
    with pytest.raises(WebhookVerificationError, match="cannot verify"):
        verify(bad, headers_for(SECRET, MSG_ID, BODY, now=TIMESTAMP), BODY, now=TIMESTAMP)
