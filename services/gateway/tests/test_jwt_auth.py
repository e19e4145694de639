"""JWT bearer tokens: verified against a JWKS served by a small aiohttp server in the test (an RSA and
an EC key generated here), first by the verifier alone, then through a real gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from servicekit.errors import ErrorKind, ServiceError

from services.gateway.jwt_tokens import JwtSettings, JwtVerifier, looks_like_jwt, user_id_for
from services.gateway.tests.running_gateway import migrated, running_gateway, settings_for

ISSUER = "https://idp.test.example"
AUDIENCE = "vidflow-api"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class IdentityProvider:
    """Signs tokens and serves its public keys as a JWKS."""

    url: str = ""
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    published: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    fetches: int = 0
    up: bool = True

    def __post_init__(self) -> None:
        self.published = {"rsa-1": self.rsa_key, "ec-1": self.ec_key}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.published.items():
            algorithm = (
                jwt.algorithms.RSAAlgorithm
                if isinstance(key, rsa.RSAPrivateKey)
                else jwt.algorithms.ECAlgorithm
            )
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        # A symmetric key in the set must never be used, whatever a token's header says.
        keys.append({"kty": "oct", "kid": "hmac-1", "k": _b64(b"a-symmetric-secret-of-32-bytes!!")})
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "name": "Alice",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, *, kid: str = "rsa-1", key: Any = None, algorithm: str = "", **claims: Any) -> str:
        key = key or self.published[kid]
        algorithm = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(self.claims(**claims), key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()

    async def jwks(request: web.Request) -> web.Response:
        provider.fetches += 1
        if not provider.up:
            return web.Response(status=503)
        return web.json_response(provider.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    provider.url = f"http://127.0.0.1:{runner.addresses[0][1]}/.well-known/jwks.json"
    yield provider
    await runner.cleanup()


def jwt_settings(idp: IdentityProvider, **overrides: Any) -> JwtSettings:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": idp.url,
        "leeway_seconds": 5,
        "jwks_min_refresh_seconds": 3600,
    }
    return JwtSettings(**{**values, **overrides})


@pytest.fixture
async def verifier(idp: IdentityProvider) -> AsyncIterator[JwtVerifier]:
    async with aiohttp.ClientSession() as http:
        yield JwtVerifier(jwt_settings(idp), http)


async def refused(verifier: JwtVerifier, token: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await verifier.verify(token)
    error = caught.value
    assert error.kind is ErrorKind.UNAUTHENTICATED
    for part in token.split("."):
        assert not part or part not in error.message
    return error


# --- the verifier -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"], ids=["RS256", "ES256"])
async def test_a_valid_token_names_a_safe_user_derived_from_issuer_and_subject(verifier, idp, kid):
    identity = await verifier.verify(idp.token(kid=kid, sub="auth0|alice/../*"))
    assert identity.user_id == user_id_for(ISSUER, "auth0|alice/../*")
    assert (identity.role, identity.name) == ("user", "Alice")


async def test_the_role_claim_makes_an_admin(verifier, idp):
    assert (await verifier.verify(idp.token(vidflow_role="admin"))).role == "admin"


def _resign_none(token: str) -> str:
    _, payload, _ = token.split(".")
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'}).encode())}.{payload}."


def _hs256_with_public_key(idp: IdentityProvider) -> str:
    """The classic confusion attack: HMAC keyed with the RSA public key, which anyone can fetch."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = _b64(json.dumps(idp.claims()).encode())
    public_pem = idp.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _hs256_with_published_secret(idp: IdentityProvider) -> str:
    return jwt.encode(
        idp.claims(), b"a-symmetric-secret-of-32-bytes!!", algorithm="HS256", headers={"kid": "hmac-1"}
    )


def _tampered(idp: IdentityProvider) -> str:
    header, _, signature = idp.token().split(".")
    payload = _b64(json.dumps(idp.claims(sub="admin", vidflow_role="admin")).encode())
    return f"{header}.{payload}.{signature}"


def _foreign(idp: IdentityProvider) -> str:
    stranger = rsa.generate_private_key(65537, 2048)
    return idp.token(kid="rsa-1", key=stranger)


BAD_TOKENS = {
    "expired": lambda idp: idp.token(exp=int(time.time()) - 60),
    "not-yet-valid": lambda idp: idp.token(nbf=int(time.time()) + 600),
    "wrong-issuer": lambda idp: idp.token(iss="https://evil.example"),
    "wrong-audience": lambda idp: idp.token(aud="another-api"),
    "no-expiry": lambda idp: idp.token(exp=None),
    "no-subject": lambda idp: idp.token(sub=None),
    "tampered": _tampered,
    "foreign-key": _foreign,
    "alg-none": lambda idp: _resign_none(idp.token()),
    "hs256-public-key": _hs256_with_public_key,
    "hs256-jwks-secret": _hs256_with_published_secret,
    "rs-token-on-ec-key": lambda idp: idp.token(kid="ec-1", key=idp.rsa_key, algorithm="RS256"),
    "not-base64": lambda idp: "eyJ!!!.eyJ!!!.sig",
    "header-not-json": lambda idp: f"{_b64(b'[1,2')}.{_b64(b'{}')}.{_b64(b'x')}",
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_tokens_are_401_without_quoting_them(verifier, idp, make):
    error = await refused(verifier, make(idp))
    assert error.code in ("invalid_token", "token_expired")


def test_an_unsigned_token_is_read_as_a_token_not_as_a_wrong_api_key(idp):
    # Found by tests/reliability/test_abuse.py: `alg: none` tokens (empty signature) got
    # `invalid_api_key` through the gateway instead of the verifier's `invalid_token`.
    assert looks_like_jwt(_resign_none(idp.token()))
    assert not looks_like_jwt("vf_AbCdEf") and not looks_like_jwt("a..c") and not looks_like_jwt(".b.c")


async def test_expiry_is_told_apart_and_leeway_is_honoured(verifier, idp):
    assert (await refused(verifier, idp.token(exp=int(time.time()) - 60))).code == "token_expired"
    await verifier.verify(idp.token(exp=int(time.time()) - 2))  # within the 5 s leeway


async def test_a_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_provider(idp):
    async with aiohttp.ClientSession() as http:
        verifier = JwtVerifier(jwt_settings(idp, jwks_min_refresh_seconds=0.0), http)
        await verifier.verify(idp.token())
        assert idp.fetches == 1
        idp.published["rsa-2"] = rsa.generate_private_key(65537, 2048)
        await verifier.verify(idp.token(kid="rsa-2"))  # unknown kid: one refresh finds it
        assert idp.fetches == 2
        await verifier.verify(idp.token(kid="rsa-2"))
        assert idp.fetches == 2  # cached

        bounded = JwtVerifier(jwt_settings(idp), http)  # refreshes at most once an hour
        await bounded.verify(idp.token())
        before = idp.fetches
        for _ in range(5):
            await refused(bounded, idp.token(kid="rsa-9", key=idp.rsa_key))
        assert idp.fetches == before


async def test_an_unreachable_jwks_is_503_not_401(idp):
    idp.up = False
    async with aiohttp.ClientSession() as http:
        verifier = JwtVerifier(jwt_settings(idp), http)
        with pytest.raises(ServiceError) as caught:
            await verifier.verify(idp.token())
    assert caught.value.kind is ErrorKind.UNAVAILABLE


# --- through the gateway ----------------------------------------------------------------------------


@pytest.fixture
async def database(fresh_database_url: str) -> str:
    return await migrated(fresh_database_url)


@pytest.mark.integration
async def test_tokens_authenticate_through_the_gateway_and_provision_the_user(idp, database):
    settings = settings_for(database, jwt=jwt_settings(idp))
    subject = f"sub-{uuid.uuid4().hex}"
    async with running_gateway(settings) as url, aiohttp.ClientSession() as http:
        token = idp.token(sub=subject, name="Token User")
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/v1/api_keys", headers=headers) as response:
            assert response.status == 200, await response.text()
            assert response.headers["x-ratelimit-limit-requests"] == str(settings.default_requests_per_minute)
        # A token user can make itself an API key; the key belongs to the same user.
        async with http.post(f"{url}/v1/api_keys", headers=headers, json={"name": "cli"}) as response:
            created = await response.json()
        assert created["owner_id"] == user_id_for(ISSUER, subject)
        async with http.get(f"{url}/v1/admin/users", headers=headers) as response:
            assert response.status == 403
        admin = {"Authorization": f"Bearer {idp.token(sub='boss', vidflow_role='admin')}"}
        async with http.get(f"{url}/v1/admin/users/{created['owner_id']}", headers=admin) as response:
            assert response.status == 200
            assert (await response.json())["name"] == "Token User"
        for bad in (_tampered(idp), _resign_none(token), idp.token(exp=int(time.time()) - 60)):
            async with http.get(f"{url}/v1/api_keys", headers={"Authorization": f"Bearer {bad}"}) as response:
                text = await response.text()
                assert response.status == 401 and "X-Request-Id" in response.headers
            assert set(json.loads(text)["error"]) >= {"message", "type", "param", "code"}
            assert bad.split(".")[1] not in text
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT id, role FROM gateway.users WHERE id = %s", (created["owner_id"],)
        ).fetchall()
    assert rows == [(created["owner_id"], "user")]


@pytest.mark.integration
async def test_without_jwt_settings_a_token_is_just_a_wrong_api_key(idp, database):
    async with running_gateway(settings_for(database)) as url, aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/v1/api_keys", headers={"Authorization": f"Bearer {idp.token()}"}
        ) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_api_key"
