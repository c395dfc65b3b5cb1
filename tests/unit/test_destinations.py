"""The intake check for URLs a client hands in: refused when they reach a non-public address."""

from __future__ import annotations

import ipaddress

import pytest

from orchestrator.fetch.addresses import IPAddress
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.destinations import refuse_private_url
from orchestrator.fetch.transport import Resolver, system_resolver
from schemas.errors import RejectedInput


def resolver_for(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        return await system_resolver(host, port)

    return resolve


async def check(
    url: str, allow: AllowList | None = None, *, resolver: Resolver | None = None
) -> None:
    await refuse_private_url(
        url,
        allow or AllowList(),
        what="image URL",
        setting="UPSCALE_FETCH_ALLOW_HOSTS",
        resolver=resolver,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://127.0.0.2:8080/a.png",
        "http://localhost/a.png",
        "http://2130706433/a.png",
        "http://0x7f000001/a.png",
        "http://0.0.0.0/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/a.png",
        "https://192.168.1.1/a.png",
    ],
)
async def test_non_public_destinations_are_refused(url: str) -> None:
    with pytest.raises(RejectedInput, match="non-public address") as info:
        await check(url)
    assert "UPSCALE_FETCH_ALLOW_HOSTS" in info.value.message


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolve = resolver_for({"cdn.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(RejectedInput):
        await check("https://cdn.example/a.png", resolver=resolve)
    public = resolver_for({"cdn.example": ["93.184.216.34"]})
    await check("https://cdn.example/a.png", resolver=public)


async def test_the_allow_list_widens_it() -> None:
    await check("http://127.0.0.1:8081/a.png", AllowList.parse("127.0.0.1:8081"))
    with pytest.raises(RejectedInput):
        await check("http://127.0.0.1:8082/a.png", AllowList.parse("127.0.0.1:8081"))


async def test_an_unresolvable_name_is_left_to_the_transport() -> None:
    async def fails(host: str, port: int) -> list[IPAddress]:
        raise OSError("no such name")

    await check("https://nowhere.invalid/a.png", resolver=fails)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "http:///x"])
async def test_other_schemes_and_empty_hosts_are_refused(url: str) -> None:
    with pytest.raises(RejectedInput):
        await check(url)
