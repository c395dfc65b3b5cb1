"""Is a URL a client gives us one we may reach later? Checked when it is accepted.

The guarded transport refuses a non-public address when the request is made; this
check refuses it earlier, when a client hands the URL in (a job's input image, a job's
``webhook_url``, a subscription), so the client gets a clear 400 instead of a job that
fails later or a subscription retried for hours against an address it may never reach.

Both use the same resolver and the same predicate (``addresses.is_public_address``),
so odd spellings of an address (``2130706433``, ``0x7f000001``, ``[::ffff:127.0.0.1]``,
``0.0.0.0``) and names that resolve to one (``localhost``) are judged by the address
they reach. A name that does not resolve now is accepted: the transport checks again,
at every connection, for every redirect.
"""

from __future__ import annotations

import asyncio

import httpx

from orchestrator.fetch.addresses import is_public_address
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.transport import Resolver, system_resolver
from schemas.errors import RejectedInput

__all__ = ["refuse_private_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
RESOLVE_TIMEOUT_S = 3.0


async def refuse_private_url(
    url: str,
    allow: AllowList,
    *,
    what: str,
    setting: str,
    resolver: Resolver | None = None,
    resolve_timeout_s: float = RESOLVE_TIMEOUT_S,
) -> None:
    """Raise :class:`RejectedInput` if ``url`` is not http(s), or its host is (or
    resolves to) a non-public address that ``allow`` does not allow.

    ``what`` names the URL in the message ("image URL"); ``setting`` is the variable
    that would allow the host. The message never says what the address answered: no
    request is made.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise RejectedInput(f"the {what} is not a valid URL") from None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.host:
        raise RejectedInput(f"the {what} must be an http(s) URL")
    host = parsed.host
    port = parsed.port or _DEFAULT_PORTS[scheme]
    resolve = resolver if resolver is not None else system_resolver
    try:
        async with asyncio.timeout(resolve_timeout_s):
            addresses = await resolve(host, port)
    except (OSError, TimeoutError, ValueError, UnicodeError):
        return  # not resolvable now; the guarded transport decides when it connects
    if not addresses:
        return
    for ip in addresses:
        if not (is_public_address(ip) or allow.allows(host, port, ip)):
            raise RejectedInput(
                f"the {what} points at a private, loopback or otherwise non-public address; "
                f"only public hosts are accepted (an operator can allow a host with {setting})"
            )
