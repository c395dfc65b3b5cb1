"""Which adapter serves which provider name, and where each sandbox lives."""

from __future__ import annotations

import httpx

from orchestrator.providers.base import Provider
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.settings import Settings

# Where the built-in sandbox serves each provider's API, under the service's own URL.
SANDBOX_PATHS = {
    "upsampler": "/sandbox/upsampler/api/v1",
    "fotor": "/sandbox/fotor",
    "photio": "/sandbox/photio",
    "artnex": "/sandbox/artnex",
}
# Providers that take one webhook URL for the whole account, registered by hand.
ACCOUNT_WEBHOOK = frozenset({"fotor"})


def build_provider(
    name: str, client: httpx.AsyncClient, *, base_url: str, api_key: str, settings: Settings
) -> Provider | None:
    """The adapter for ``name``, or None when this release has none."""
    if name == "upsampler":
        return UpsamplerProvider(
            client, base_url=base_url, api_key=api_key, submit_timeout_s=settings.submit_timeout_s
        )
    return None
