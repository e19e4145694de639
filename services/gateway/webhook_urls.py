"""Where client webhooks may be sent: http(s) URLs and, unless private addresses are allowed, only
public addresses, so a webhook cannot be aimed at the platform's own network (SSRF).

The check runs when a URL is registered (a clear 400 for an address or a name that is plainly
private), and again on every connection: the delivery session resolves names through
`PublicAddressResolver`, which refuses private answers, so a name that resolves to a public address
at registration and to 10.0.0.1 later (DNS rebinding) still cannot reach inside. Redirects are
never followed, for the same reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_CHARS = 2048
_SCHEMES = ("http", "https")
# Names that always mean this machine, whatever DNS says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_REGISTRATION_LOOKUP_SECONDS = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlError(ValueError):
    """The URL cannot receive webhooks; the message says why, in words fit for an API answer."""


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared, reserved or multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP means, or None for a name. Also reads the forms
    inet_aton accepts (`127.1`, `2130706433`, `0x7f.0.0.1`), which HTTP clients connect to as-is."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # Numeric only: this never asks DNS.
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """`url` if webhooks may be sent to it (as far as can be told without DNS), else WebhookUrlError."""
    if not url:
        raise WebhookUrlError("The webhook URL is empty.")
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlError(f"The webhook URL is longer than {MAX_URL_CHARS} characters.")
    if not url.isascii() or not url.isprintable() or any(character.isspace() for character in url):
        raise WebhookUrlError("The webhook URL must be ASCII without spaces (percent-encode the rest).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise WebhookUrlError("The webhook URL is not a valid URL.") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise WebhookUrlError("The webhook URL must start with https:// (or http://).")
    host = parts.hostname
    if not host:
        raise WebhookUrlError("The webhook URL has no host.")
    if not allow_private:
        address = literal_address(host)
        if address is not None and not is_public(address):
            raise WebhookUrlError("The webhook URL points at a private or local address.")
        if host.rstrip(".").lower() in _LOCAL_NAMES or host.rstrip(".").lower().endswith(".localhost"):
            raise WebhookUrlError("The webhook URL points at this machine.")
    return url


async def check_webhook_host(url: str, *, allow_private: bool) -> None:
    """At registration: refuse a name that resolves to a private address now. A name that does not
    resolve is let through (DNS may be down for a moment); every delivery checks again."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    if literal_address(host) is not None:
        return  # already judged by check_webhook_url
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(_REGISTRATION_LOOKUP_SECONDS):
            infos = await loop.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return
    for info in infos:
        if not is_public(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])):
            raise WebhookUrlError("The webhook URL's host resolves to a private or local address.")


class PublicAddressResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing any name with a private answer (unless allowed).
    Hosts written as IP addresses never reach a resolver; the sender checks those itself."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._resolver.resolve(host, port, family)
        if not self._allow_private:
            for answer in answers:
                if not is_public(ipaddress.ip_address(answer["host"].split("%", 1)[0])):
                    # An OSError becomes aiohttp's ClientConnectorError: the attempt fails.
                    raise OSError(f"webhook host {host!r} resolves to a non-public address")
        return answers

    async def close(self) -> None:
        await self._resolver.close()
