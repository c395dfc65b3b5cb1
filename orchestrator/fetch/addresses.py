"""Is an IP address on the public internet?

A result URL comes from a provider, so it is untrusted input: a URL that
points at loopback, the LAN, a cloud metadata service (169.254.169.254) or
any other special-purpose range must not be fetched. ``is_public_address``
is the one pure predicate the guarded transport asks about every address it
resolves and every socket it connects.

The check is deliberately belt and braces: our own table of the IANA
special-purpose ranges (so the answer does not depend on the patch level of
the ``ipaddress`` module) *and* the standard library's properties. An address
is public only if neither objects. IPv6 addresses that embed an IPv4 address
(IPv4-mapped, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the
embedded address as well.
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["IPAddress", "is_public_address"]

_V4_FORBIDDEN = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
    )
)

_V6_FORBIDDEN = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/8",  # unspecified, loopback, IPv4-compatible, reserved
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_v4(ip)
    return _is_public_v6(ip)


def _stdlib_objects(ip: IPAddress) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _is_public_v4(ip: ipaddress.IPv4Address) -> bool:
    if any(ip in net for net in _V4_FORBIDDEN):
        return False
    return not _stdlib_objects(ip)


def _is_public_v6(ip: ipaddress.IPv6Address) -> bool:
    # Drop any zone index ("fe80::1%eth0"): it does not change the range.
    bare = ipaddress.IPv6Address(int(ip))
    mapped = bare.ipv4_mapped
    if mapped is not None:
        return _is_public_v4(mapped)
    if bare in _NAT64:
        # The well-known NAT64 prefix is routable; what matters is where the
        # translator will send the packets.
        return _is_public_v4(ipaddress.IPv4Address(int(bare) & 0xFFFFFFFF))
    sixtofour = bare.sixtofour
    if sixtofour is not None:
        # Judged by the IPv4 address inside, like the two above: whether the stdlib
        # calls 2002::/16 itself private changed between Python 3.11 releases.
        return _is_public_v4(sixtofour)
    if bare.teredo is not None or bare.is_site_local:
        return False
    if any(bare in net for net in _V6_FORBIDDEN):
        return False
    return not _stdlib_objects(bare)
