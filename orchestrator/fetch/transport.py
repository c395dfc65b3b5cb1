"""An httpx client that will not connect to non-public addresses.

The guard sits at the lowest layer httpx lets us reach, the httpcore network
backend, so it sees *every* TCP connection the client opens, including the
ones for each redirect hop and every new pooled connection:

1. resolve the host once (``loop.getaddrinfo``);
2. refuse with :class:`ForbiddenURL` if any resolved address is not public and
   the allow list does not allow ``(host, port, address)``;
3. connect to the checked IP address itself, never the name again, so DNS
   cannot answer differently the second time (DNS rebinding);
4. check the peer address of the connected socket once more.

TLS is unaffected: httpcore calls ``start_tls(server_hostname=<URL host>)`` on
the stream we return, so SNI and certificate verification use the name.

:class:`ForbiddenURL` is not an httpcore exception, so it passes through
httpcore's pool and httpx's exception mapping unchanged (both re-raise what
they do not recognise), and the caller of ``client.get``/``client.stream``
receives it as is.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias

import httpcore
import httpx

from orchestrator.fetch.addresses import IPAddress, is_public_address
from orchestrator.fetch.allowlist import AllowList
from schemas.errors import ForbiddenURL

__all__ = ["GuardedBackend", "Resolver", "make_guarded_client", "system_resolver"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Turns ``(host, port)`` into the addresses to try, in order."""

# The same shape as httpcore's (private) SOCKET_OPTION alias.
SocketOption: TypeAlias = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve with the event loop's ``getaddrinfo``; IP literals are returned as is."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that checks every address before and after connecting."""

    def __init__(
        self,
        allow: AllowList,
        *,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allow = allow
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()
        self._resolve = resolver if resolver is not None else system_resolver

    def permits(self, host: str, port: int, ip: IPAddress) -> bool:
        return is_public_address(ip) or self._allow.allows(host, port, ip)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self._resolve_checked(host, port, timeout)
        last_error: Exception | None = None
        for ip in addresses:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                stream = await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
                continue
            try:
                self._check_peer(stream, host, port, ip)
            except BaseException:
                await stream.aclose()
                raise
            return stream
        if last_error is not None:
            raise last_error
        raise httpcore.ConnectError(f"no address to connect to for {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenURL("unix sockets are not allowed for result downloads")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _resolve_checked(
        self,
        host: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109 - the connect timeout, passed along
    ) -> list[IPAddress]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:  # socket.gaierror and friends
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for ip in addresses:
            if not self.permits(host, port, ip):
                logger.warning(
                    "refusing connection to %s port %d: resolves to non-public address %s",
                    host,
                    port,
                    ip,
                )
                raise ForbiddenURL(f"host {host} resolves to a non-public address")
        return addresses

    def _check_peer(
        self, stream: httpcore.AsyncNetworkStream, host: str, port: int, expected: IPAddress
    ) -> None:
        peer = _peer_address(stream)
        if peer is None:
            logger.warning("refusing connection to %s port %d: unknown peer address", host, port)
            raise ForbiddenURL(f"cannot check the address connected to for {host}")
        same = int(peer) == int(expected) and peer.version == expected.version
        if not same or not self.permits(host, port, peer):
            logger.warning(
                "refusing connection to %s port %d: connected to %s, expected %s",
                host,
                port,
                peer,
                expected,
            )
            raise ForbiddenURL(f"connection to {host} reached an unexpected address")


def _peer_address(stream: httpcore.AsyncNetworkStream) -> IPAddress | None:
    addr = stream.get_extra_info("server_addr")
    if addr is None:
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            try:
                addr = sock.getpeername()
            except OSError:
                return None
    if not isinstance(addr, tuple) or not addr or not isinstance(addr[0], str):
        return None
    try:
        return ipaddress.ip_address(addr[0])
    except ValueError:
        return None


def make_guarded_client(
    allow: AllowList,
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits | None = None,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection goes through :class:`GuardedBackend`.

    ``httpx.AsyncHTTPTransport`` has no public way to choose httpcore's
    network backend, and writing our own transport would mean copying httpx's
    request/response conversion and exception mapping. So we build the normal
    transport and swap its private ``_pool`` for an ``httpcore.AsyncConnectionPool``
    configured the same way plus ``network_backend=GuardedBackend(...)``. The
    attribute is checked so an httpx upgrade that renames it fails loudly here
    instead of silently fetching unguarded.

    ``trust_env=False`` is belt and braces: httpx 0.28 already ignores
    ``HTTP(S)_PROXY`` when a transport is given, but a proxy transport would
    bypass the guard, and ``.netrc`` credentials have no business being sent
    to a provider's CDN. For the same reason this function takes no ``proxy``
    or ``mounts``. Redirects are not followed (``follow_redirects=False``):
    :class:`ResultFetcher` follows them itself, checking each hop's scheme,
    and the backend checks each hop's address.
    """
    limits = limits if limits is not None else httpx.Limits(max_connections=20)
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError(
            "httpx.AsyncHTTPTransport has no _pool to guard; check the httpx version"
        )
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(allow, resolver=resolver),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )
