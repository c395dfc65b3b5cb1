"""Where the standalone sandbox (``upscale sandbox``) may connect besides public addresses.

Its own origin (the address it listens on; never the ``Host`` a caller sends), the
service's callback origin (``UPSCALE_PUBLIC_URL``, when set) and whatever the operator
lists in ``UPSCALE_FETCH_ALLOW_HOSTS`` (for a service on another loopback port, say).
The mounted sandbox gets the same from the runtime (``Runtime.own_allow``).
"""

from __future__ import annotations

from orchestrator.common.settings import Settings
from orchestrator.fetch.allowlist import AllowList

_ANY = ("0.0.0.0", "::", "")  # noqa: S104 - names of "every address", not a bind


def standalone_allow(settings: Settings, *, host: str, port: int) -> AllowList:
    local = "127.0.0.1" if host in _ANY else host
    own = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
    allow = AllowList.parse(settings.fetch_allow_hosts).with_origin(own)
    if settings.public_url:
        allow = allow.with_origin(settings.public_url)
    return allow
