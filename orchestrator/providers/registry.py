"""Which adapter serves which provider name, and where each sandbox lives."""

from __future__ import annotations

import httpx

from orchestrator.common.settings import Settings
from orchestrator.providers.artnex import ArtnexProvider
from orchestrator.providers.base import Provider
from orchestrator.providers.fotor import FotorProvider
from orchestrator.providers.photio import PhotioProvider
from orchestrator.providers.upsampler import UpsamplerProvider

# Where the built-in sandbox serves each provider's API, under the service's own URL.
SANDBOX_PATHS = {
    "upsampler": "/sandbox/upsampler/api/v1",
    "fotor": "/sandbox/fotor",
    "photio": "/sandbox/photio",
    "artnex": "/sandbox/artnex",
}
# Every provider this release has an adapter for.
PROVIDER_NAMES = ("upsampler", "fotor", "photio", "artnex", "local")

# Providers that take one webhook URL for the whole account, registered by hand.
ACCOUNT_WEBHOOK = frozenset({"fotor"})


def build_provider(
    name: str,
    client: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    settings: Settings,
    sandboxed: bool = False,
) -> Provider | None:
    """The adapter for ``name``, or None when this release has none."""
    if name == "upsampler":
        return UpsamplerProvider(
            client, base_url=base_url, api_key=api_key, submit_timeout_s=settings.submit_timeout_s
        )
    if name == "fotor":
        return FotorProvider(
            client,
            base_url=base_url,
            api_key=api_key,
            max_image_width=settings.fotor_max_image_px,
            max_image_height=settings.fotor_max_image_px,
            # The sandbox serves its s3:// results itself, under its own origin.
            s3_base_url=f"{base_url}/s3" if sandboxed else settings.fotor_s3_base_url,
            submit_timeout_s=settings.submit_timeout_s,
        )
    if name == "photio":
        return PhotioProvider(
            client, base_url=base_url, api_key=api_key, submit_timeout_s=settings.sync_timeout_s
        )
    if name == "artnex":
        return ArtnexProvider(
            client, base_url=base_url, api_key=api_key, submit_timeout_s=settings.sync_timeout_s
        )
    return None
