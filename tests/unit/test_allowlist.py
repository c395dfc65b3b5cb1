from __future__ import annotations

import ipaddress

import pytest

from orchestrator.fetch.allowlist import AllowEntry, AllowList

LOOPBACK = ipaddress.ip_address("127.0.0.1")
LOOPBACK6 = ipaddress.ip_address("::1")


def test_empty_allows_nothing() -> None:
    for text in ("", None, " , ,"):
        allow = AllowList.parse(text)
        assert not allow
        assert not allow.allows("localhost", 80, LOOPBACK)


def test_parse_all_entry_kinds_and_round_trip() -> None:
    text = "cdn.example.com, localhost:8081,127.0.0.1:9000,::1,[::1]:80,10.0.0.0/8,fd00::/8"
    allow = AllowList.parse(text)
    assert len(allow.entries) == 7
    assert str(allow) == text.replace(" ", "")
    assert AllowList.parse(str(allow)) == allow


def test_hostname_entry_matches_the_name_on_any_port_whatever_it_resolves_to() -> None:
    allow = AllowList.parse("Sandbox.Local")
    assert allow.allows("sandbox.local", 80, LOOPBACK)
    assert allow.allows("SANDBOX.local.", 8443, ipaddress.ip_address("10.1.2.3"))
    assert not allow.allows("other.local", 80, LOOPBACK)
    assert not allow.allows("evil.sandbox.local", 80, LOOPBACK)


def test_host_port_entry_matches_only_that_port() -> None:
    allow = AllowList.parse("localhost:8081")
    assert allow.allows("localhost", 8081, LOOPBACK)
    assert not allow.allows("localhost", 8082, LOOPBACK)


def test_ip_entries() -> None:
    allow = AllowList.parse("127.0.0.1:9000, ::1")
    assert allow.allows("anything", 9000, LOOPBACK)
    assert not allow.allows("anything", 9001, LOOPBACK)
    assert allow.allows("anything", 1, LOOPBACK6)
    assert not allow.allows("anything", 9000, ipaddress.ip_address("127.0.0.2"))


def test_ipv4_entry_matches_ipv4_mapped_address_and_back() -> None:
    allow = AllowList.parse("127.0.0.1")
    assert allow.allows("x", 80, ipaddress.ip_address("::ffff:127.0.0.1"))
    mapped = AllowList.parse("::ffff:10.0.0.0/104")
    assert mapped.allows("x", 80, ipaddress.ip_address("10.9.9.9"))


def test_bracketed_ipv6_with_port() -> None:
    allow = AllowList.parse("[::1]:8080")
    assert allow.allows("x", 8080, LOOPBACK6)
    assert not allow.allows("x", 8081, LOOPBACK6)


def test_cidr_entries() -> None:
    allow = AllowList.parse("10.0.0.0/8, fd00::/8, 192.168.1.7/24")
    assert allow.allows("x", 1, ipaddress.ip_address("10.200.0.1"))
    assert allow.allows("x", 1, ipaddress.ip_address("fd12::1"))
    assert allow.allows("x", 1, ipaddress.ip_address("192.168.1.200"))  # host bits ignored
    assert not allow.allows("x", 1, ipaddress.ip_address("11.0.0.1"))
    assert not allow.allows("x", 1, ipaddress.ip_address("fe80::1"))


def test_scoped_ipv6_matches_unscoped_entry() -> None:
    allow = AllowList.parse("fe80::/10")
    assert allow.allows("x", 1, ipaddress.ip_address("fe80::1%eth0"))


@pytest.mark.parametrize(
    "bad",
    [
        "http://cdn.example.com",
        "a b",
        "10.0.0.0/33",
        "host:abc",
        "host:0",
        "host:99999",
        "[::1",
        "[::1]x",
        "[127.0.0.1]",
        "*.example.com",
        "-bad-.example.com",
        "a..b",
        "x" * 64 + ".com",
    ],
)
def test_bad_entries_raise_naming_the_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="bad allow-list entry") as info:
        AllowList.parse(f"ok.example.com, {bad}, 127.0.0.1")
    assert repr(bad) in str(info.value)


def test_extend_returns_a_new_list() -> None:
    base = AllowList.parse("a.example")
    bigger = base.extend(["127.0.0.1:8081", AllowEntry.parse("b.example")])
    assert len(base.entries) == 1
    assert len(bigger.entries) == 3
    assert bigger.allows("whatever", 8081, LOOPBACK)
    assert not base.allows("whatever", 8081, LOOPBACK)
    with pytest.raises(ValueError, match="nope nope"):
        base.extend(["nope nope"])


def test_with_origin_adds_host_and_default_port() -> None:
    allow = AllowList().with_origin("http://127.0.0.1:8081/results/x.png?sig=secret")
    assert allow.allows("127.0.0.1", 8081, LOOPBACK)
    assert not allow.allows("127.0.0.1", 8082, LOOPBACK)
    assert "secret" not in str(allow)

    https = AllowList().with_origin("https://Sandbox.Local/path")
    assert https.allows("sandbox.local", 443, ipaddress.ip_address("10.0.0.5"))
    assert not https.allows("sandbox.local", 80, ipaddress.ip_address("10.0.0.5"))

    v6 = AllowList().with_origin("http://[::1]:9000/")
    assert v6.allows("::1", 9000, LOOPBACK6)
    assert str(v6) == "[::1]:9000"


@pytest.mark.parametrize("url", ["ftp://host/x", "file:///etc/passwd", "not a url", "http://"])
def test_with_origin_refuses_non_http_origins(url: str) -> None:
    with pytest.raises(ValueError):
        AllowList().with_origin(url)
