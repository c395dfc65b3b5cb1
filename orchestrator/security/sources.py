"""Where a callback came from: the client address behind trusted proxies, and
per-provider source allow-lists (Fotor publishes the addresses it calls from)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs; ValueError naming a bad entry."""
    out: list[Network] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    text = text.strip().strip("[]")
    if text.count(":") == 1 and "." in text:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> Address | None:
    """The address of the client that called us.

    ``X-Forwarded-For`` is believed only as far as it was written by proxies we
    trust: walk it from the right, past trusted proxies, to the first other address.
    """
    current = _address(peer) if peer else None
    if current is None or not forwarded_for or not _within(current, trusted):
        return current
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            return None
        current = address
        if not _within(address, trusted):
            break
    return current


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Per-provider allow-lists of callback source addresses (empty: any source)."""

    allowed: Mapping[str, tuple[Network, ...]]
    trusted_proxies: tuple[Network, ...] = ()

    def allows(self, provider: str, peer: str | None, forwarded_for: str | None) -> bool:
        networks = self.allowed.get(provider, ())
        if not networks:
            return True
        address = client_address(peer, forwarded_for, self.trusted_proxies)
        return address is not None and _within(address, networks)
