"""Webhook URLs partners may register (SSRF protection).

``check_webhook_url`` returns the normalised URL or raises UnsafeUrl with the reason (a 422):
https only (plain http only where loopback is allowed, for local development and tests), no
credentials in the URL, and a host whose every address is public: no loopback, private,
link-local (which holds the cloud metadata address 169.254.169.254), shared, multicast,
reserved or unspecified address, IPv4-mapped IPv6 forms included. ``allow_loopback`` lets
loopback addresses through and nothing else.

A host can be re-pointed after it was checked (DNS rebinding), so the deliverer calls
``resolve_target`` before every attempt. For plain http (local development) it connects to the
checked address itself. For https it connects by name: the TLS certificate check is what stops
a name re-pointed between the check and the connection, since no internal service holds a
certificate for the partner's host, and connecting by name keeps one TLS session per host
(a connection pool keyed by address would share one host's session with another on the same
address, a CDN's for example).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL = 2000

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A webhook URL the platform will not call."""


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL (for http, with the host replaced by the checked
    address) and the Host header the original URL needs."""

    url: str
    host_header: str


async def check_webhook_url(url: str, *, allow_loopback: bool) -> str:
    parts = _parse(url, allow_loopback=allow_loopback)
    await _addresses(parts, allow_loopback=allow_loopback)
    return parts._replace(scheme=parts.scheme.lower(), fragment="").geturl()


async def resolve_target(url: str, *, allow_loopback: bool) -> Target:
    """Where to send an attempt for ``url``, its host checked again (UnsafeUrl when refused)."""
    parts = _parse(url, allow_loopback=allow_loopback)._replace(fragment="")
    address = (await _addresses(parts, allow_loopback=allow_loopback))[0]
    if parts.scheme.lower() == "https":
        return Target(url=parts.geturl(), host_header=parts.netloc)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return Target(url=parts._replace(netloc=netloc).geturl(), host_header=parts.netloc)


def is_allowed(address: IpAddress, *, allow_loopback: bool) -> bool:
    """Whether the platform may connect to this address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not address.is_multicast


def _parse(url: str, *, allow_loopback: bool) -> SplitResult:
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number in range)
    except ValueError as exc:
        raise UnsafeUrl("the URL cannot be parsed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must be https")
    if scheme == "http" and not allow_loopback:
        raise UnsafeUrl("the URL must be https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not hold credentials")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    return parts


async def _addresses(parts: SplitResult, *, allow_loopback: bool) -> list[IpAddress]:
    """Every address of the URL's host, each allowed; the host itself when it is an address."""
    host = parts.hostname
    assert host is not None
    try:
        addresses: list[IpAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(host, parts.port or (443 if parts.scheme.lower() == "https" else 80))
    for address in addresses:
        if not is_allowed(address, allow_loopback=allow_loopback):
            raise UnsafeUrl("the host is not a public address")
    return addresses


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl("the host does not resolve") from exc
    found: list[IpAddress] = []
    for *_, sockaddr in infos:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); link-local is refused anyway.
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UnsafeUrl("the host does not resolve")
    return found
