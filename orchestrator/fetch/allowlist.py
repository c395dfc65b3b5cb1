"""Which non-public destinations may still be fetched from.

Public addresses are always allowed; the allow list only ever *widens* what
the guarded transport accepts, for the sandbox and for deployments where the
result store lives on a private network. It is configured by
``UPSCALE_FETCH_ALLOW_HOSTS``, a comma-separated list whose entries are

* a host name, ``cdn.internal`` (any port, whatever it resolves to),
* a host name with a port, ``localhost:8081``,
* an IP address, ``127.0.0.1`` or ``::1`` (any port),
* an IP address with a port, ``127.0.0.1:8081`` or ``[::1]:8081``,
* a network in CIDR notation, ``10.0.0.0/8`` or ``fd00::/8`` (any port).

A host-name entry matches the name in the URL, not what it resolves to: it
says "I trust whatever this name points at".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

from orchestrator.fetch.addresses import IPAddress

__all__ = ["AllowEntry", "AllowList"]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One entry: a host name or a network, optionally limited to one port."""

    text: str
    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if (self.host is None) == (self.network is None):
            raise ValueError("an allow-list entry is a host name or a network, exactly one")

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """Parse one entry; ValueError names the entry when it is malformed."""
        raw = text.strip()
        try:
            return cls._parse(raw.lower(), raw)
        except ValueError as exc:
            raise ValueError(f"bad allow-list entry {raw!r}: {exc}") from None

    @classmethod
    def _parse(cls, entry: str, raw: str) -> AllowEntry:
        if not entry:
            raise ValueError("empty entry")
        if "://" in entry:
            raise ValueError("expected a host, host:port, IP address or CIDR, not a URL")
        if "/" in entry:
            return cls(text=raw, network=ipaddress.ip_network(entry, strict=False))
        if entry.startswith("["):
            inside, sep, rest = entry[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError("expected [IPv6] or [IPv6]:port")
            address = ipaddress.IPv6Address(inside)
            port = _parse_port(rest[1:]) if rest else None
            return cls(text=raw, network=_single(address), port=port)
        try:
            return cls(text=raw, network=_single(ipaddress.ip_address(entry)))
        except ValueError:
            pass
        name, sep, port_text = entry.partition(":")
        port = _parse_port(port_text) if sep else None
        try:
            return cls(text=raw, network=_single(ipaddress.IPv4Address(name)), port=port)
        except ValueError:
            pass
        return cls(text=raw, host=_parse_hostname(name), port=port)

    def matches(self, host: str, port: int, ip: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return _normalise_host(host) == self.host
        if self.network is None:  # not after __post_init__; the type cannot say so
            return False
        return any(candidate in self.network for candidate in _variants(ip))


@dataclass(frozen=True, slots=True)
class AllowList:
    """An immutable set of entries; ``extend`` and ``with_origin`` return new lists."""

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        """Parse a comma-separated list; blanks are skipped, bad entries raise ValueError."""
        if not text:
            return cls()
        return cls(tuple(AllowEntry.parse(part) for part in text.split(",") if part.strip()))

    def extend(self, entries: Iterable[str | AllowEntry]) -> AllowList:
        """A new list with ``entries`` (strings in the parse syntax, or entries) added."""
        added = tuple(e if isinstance(e, AllowEntry) else AllowEntry.parse(e) for e in entries)
        return AllowList(self.entries + added)

    def with_origin(self, url: str) -> AllowList:
        """A new list that also allows the origin (host and port) of an http(s) URL."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {scheme or '?'}://{parts.hostname or ''}")
        port = parts.port or _DEFAULT_PORTS[scheme]
        host = parts.hostname
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            entry = AllowEntry(text=text, network=_single(ipaddress.ip_address(host)), port=port)
        except ValueError:
            entry = AllowEntry(text=text, host=_parse_hostname(host), port=port)
        return AllowList((*self.entries, entry))

    def allows(self, host: str, port: int, ip: IPAddress) -> bool:
        """Does some entry allow connecting to ``ip`` for ``host:port``?"""
        return any(entry.matches(host, port, ip) for entry in self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        return ",".join(entry.text for entry in self.entries)


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def _parse_hostname(name: str) -> str:
    host = _normalise_host(name)
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise ValueError("not a host name, IP address or CIDR network")
    return host


def _normalise_host(host: str) -> str:
    return host.strip().lower().removesuffix(".")


def _single(address: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(_unscoped(address))


def _unscoped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        return ipaddress.IPv6Address(int(address))
    return address


def _variants(ip: IPAddress) -> tuple[IPAddress, ...]:
    """The address itself and its other spelling (IPv4 <-> IPv4-mapped IPv6)."""
    bare = _unscoped(ip)
    if isinstance(bare, ipaddress.IPv4Address):
        return (bare, ipaddress.IPv6Address(0xFFFF_0000_0000 | int(bare)))
    if bare.ipv4_mapped is not None:
        return (bare, bare.ipv4_mapped)
    return (bare,)
