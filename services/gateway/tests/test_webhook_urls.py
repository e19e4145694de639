"""Webhook URLs: http(s) only, and no private or local addresses unless allowed (SSRF)."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from services.gateway.tests.webhook_receiver import webhook_receiver
from services.gateway.webhook_urls import (
    PublicAddressResolver,
    WebhookUrlError,
    check_webhook_host,
    check_webhook_url,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vidflow",
        "http://hooks.example.com:8080/path?token=abc",
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_public_http_urls_are_accepted(url):
    assert check_webhook_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/", "https://"),
        ("file:///etc/passwd", "https://"),
        ("javascript:alert(1)", "https://"),
        ("https://", "no host"),
        ("https://exa mple.com/", "without spaces"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://" + "a" * 2050 + ".com/", "longer than"),
        ("", "empty"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(WebhookUrlError, match=why):
        check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://127.1/hook",  # inet_aton shorthand
        "http://0x7f.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://224.0.0.1/hook",  # multicast
    ],
)
def test_private_and_local_addresses_are_refused_by_default_and_allowed_when_configured(url):
    with pytest.raises(WebhookUrlError, match=r"private|local|this machine"):
        check_webhook_url(url, allow_private=False)
    assert check_webhook_url(url, allow_private=True) == url


async def test_registration_refuses_a_name_that_resolves_to_loopback():
    # Resolved, not judged by name: the hosts file says 127.0.0.1.
    with pytest.raises(WebhookUrlError, match="resolves to a private"):
        await check_webhook_host("http://localhost/hook", allow_private=False)
    await check_webhook_host("http://localhost/hook", allow_private=True)
    # A name that does not resolve now is let through: every delivery checks again.
    await check_webhook_host("https://no-such-host.invalid/hook", allow_private=False)


async def test_the_delivery_resolver_refuses_private_answers_at_connection_time():
    assert socket.gethostbyname("localhost").startswith("127.")
    async with webhook_receiver() as receiver:
        # A name, not an address: it goes through the resolver.
        url = receiver.url().replace("127.0.0.1", "localhost")
        refusing = aiohttp.TCPConnector(resolver=PublicAddressResolver(allow_private=False))
        async with aiohttp.ClientSession(connector=refusing) as session:
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.post(url, data=b"{}")
        allowing = aiohttp.TCPConnector(resolver=PublicAddressResolver(allow_private=True))
        async with aiohttp.ClientSession(connector=allowing) as session:
            async with session.post(url, data=b"{}") as response:
                assert response.status == 204
    assert len(receiver.received) == 1
