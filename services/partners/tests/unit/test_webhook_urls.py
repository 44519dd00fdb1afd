"""Webhook URLs: only public https endpoints, unless loopback is allowed (development)."""

from __future__ import annotations

import ipaddress

import pytest

from crm_partners.domain.urls import UnsafeUrl, check_webhook_url, is_allowed, resolve_target


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fc00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "240.0.0.1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "192.0.2.1", "ff02::1",
])
def test_internal_addresses_are_refused(address: str) -> None:
    assert not is_allowed(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_allowed(ipaddress.ip_address(address), allow_loopback=False)


def test_allowing_loopback_allows_nothing_else() -> None:
    assert is_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert is_allowed(ipaddress.ip_address("::1"), allow_loopback=True)
    assert is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True)
    assert not is_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert not is_allowed(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://93.184.216.34/x", "https"),
    ("http://93.184.216.34/x", "https"),
    ("file:///etc/passwd", "https"),
    ("https://user:pw@93.184.216.34/x", "credentials"),
    ("https:///x", "no host"),
    ("https://93.184.216.34:99999/x", "cannot be parsed"),
    ("https://127.0.0.1/x", "not a public address"),
    ("https://[::1]:8443/x", "not a public address"),
    ("https://169.254.169.254/latest/meta-data", "not a public address"),
    ("https://0x7f000001/x", "not a public address"),
    ("https://localhost/x", "not a public address"),
    ("https://" + "a" * 2000 + ".example/", "longer"),
])
async def test_unsafe_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        await check_webhook_url(url, allow_loopback=False)


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await check_webhook_url("https://no-such-host.invalid/hook", allow_loopback=False)


async def test_a_public_https_address_is_accepted_and_normalised() -> None:
    assert await check_webhook_url("HTTPS://93.184.216.34/hook?a=1#frag", allow_loopback=False) == \
        "https://93.184.216.34/hook?a=1"


async def test_loopback_http_is_accepted_for_development_only() -> None:
    assert await check_webhook_url("http://127.0.0.1:9000/h", allow_loopback=True) == "http://127.0.0.1:9000/h"
    assert await check_webhook_url("http://localhost:9000/h", allow_loopback=True) == "http://localhost:9000/h"
    with pytest.raises(UnsafeUrl):
        await check_webhook_url("http://127.0.0.1:9000/h", allow_loopback=False)


async def test_a_plain_http_target_is_pinned_to_the_checked_address() -> None:
    target = await resolve_target("http://localhost:9000/h?x=1#f", allow_loopback=True)
    assert target.url in ("http://127.0.0.1:9000/h?x=1", "http://[::1]:9000/h?x=1")
    assert target.host_header == "localhost:9000"
    with pytest.raises(UnsafeUrl):
        await resolve_target("http://localhost:9000/h", allow_loopback=False)


async def test_an_https_target_keeps_its_name_for_the_certificate_check() -> None:
    target = await resolve_target("https://93.184.216.34:8443/h", allow_loopback=False)
    assert target.url == "https://93.184.216.34:8443/h"
    with pytest.raises(UnsafeUrl):
        await resolve_target("https://10.0.0.1/h", allow_loopback=False)
