"""Does ``upscale serve`` mount the sandbox on its own listener? A pure decision.

The sandbox is a development tool: it takes jobs for providers that have no key,
and its control routes change what every job sees. On a listener the internet can
reach it has no business being there by accident. The rule:

- ``UPSCALE_SANDBOX=off``: never mounted.
- ``UPSCALE_SANDBOX=on``: mounted, whatever the addresses (an explicit choice).
- ``auto`` (the default): mounted only when the service is private to this machine:
  it binds a loopback host (``127.0.0.1``, ``::1``, ``localhost``) and its public URL,
  if set, is a loopback address too. An unknown bind host is not private.

Otherwise run the sandbox with ``upscale sandbox`` on a port of its own and point
``UPSCALE_<P>_BASE_URL`` at it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["SANDBOX_MODES", "SandboxMount", "decide_sandbox_mount", "is_loopback_host"]

SANDBOX_MODES = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class SandboxMount:
    """Whether to mount the sandbox, and why (for the start-up log)."""

    mounted: bool
    reason: str


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, IPv4-mapped ones)."""
    name = host.strip().strip("[]").lower().removesuffix(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def decide_sandbox_mount(
    mode: str, *, bind_host: str | None, public_url: str | None
) -> SandboxMount:
    """The rule above. ``bind_host`` is what the listener binds (``None``: unknown)."""
    if mode == "off":
        return SandboxMount(False, "UPSCALE_SANDBOX=off")
    if mode == "on":
        return SandboxMount(True, "UPSCALE_SANDBOX=on")
    if mode != "auto":
        raise ValueError(f"sandbox mode must be one of {', '.join(SANDBOX_MODES)}, got {mode!r}")
    if bind_host is None:
        return SandboxMount(False, "the address the service listens on is unknown")
    if not is_loopback_host(bind_host):
        return SandboxMount(
            False, f"the service listens on {bind_host or 'every address'}, not only this machine"
        )
    if public_url:
        host = urlsplit(public_url).hostname or ""
        if not is_loopback_host(host):
            return SandboxMount(False, "UPSCALE_PUBLIC_URL is not a loopback address")
    return SandboxMount(True, f"the service is private to this machine (listens on {bind_host})")
