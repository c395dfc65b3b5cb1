from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.security.sources import SourcePolicy, client_address, parse_networks

FOTOR = parse_networks("54.212.95.175,44.236.127.35")
PROXY = parse_networks("10.0.0.0/8")


def test_direct_peer_is_the_client() -> None:
    assert client_address("54.212.95.175", None, ()) == ipaddress.ip_address("54.212.95.175")


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    # Anyone can send the header; only our own proxy's word counts.
    got = client_address("203.0.113.9", "54.212.95.175", PROXY)
    assert got == ipaddress.ip_address("203.0.113.9")


def test_forwarded_for_from_a_trusted_proxy_names_the_client() -> None:
    got = client_address("10.1.2.3", "1.2.3.4, 54.212.95.175", PROXY)
    assert got == ipaddress.ip_address("54.212.95.175")


def test_chain_of_trusted_proxies_is_walked() -> None:
    got = client_address("10.1.2.3", "44.236.127.35, 10.9.9.9", PROXY)
    assert got == ipaddress.ip_address("44.236.127.35")


def test_policy() -> None:
    policy = SourcePolicy({"fotor": FOTOR}, trusted_proxies=PROXY)
    assert policy.allows("fotor", "54.212.95.175", None)
    assert not policy.allows("fotor", "127.0.0.1", None)
    assert not policy.allows("fotor", "127.0.0.1", "54.212.95.175")  # spoofed header
    assert policy.allows("fotor", "10.0.0.5", "54.212.95.175")
    assert policy.allows("upsampler", "127.0.0.1", None)  # no list: any source
    assert not policy.allows("fotor", None, None)


def test_bad_entries_are_named() -> None:
    with pytest.raises(ValueError, match="nope"):
        parse_networks("1.2.3.4, nope")


@given(st.text(max_size=60), st.text(max_size=200))
def test_client_address_never_raises(peer: str, header: str) -> None:
    client_address(peer, header, PROXY)
