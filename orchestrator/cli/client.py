"""The one HTTP client for the service's API: its address, the bearer token, and
how an error answer becomes a message and an exit."""

from __future__ import annotations

import os
from typing import Any

import httpx

from orchestrator.common.settings import load_settings
from orchestrator.security.bootstrap_secrets import read_api_token


def connect(url: str) -> httpx.Client:
    """A client for the service at ``url``, with ``UPSCALE_API_TOKEN`` or the token
    generated into the data directory."""
    settings = load_settings()
    token = os.environ.get("UPSCALE_API_TOKEN") or read_api_token(settings.data_dir)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60.0, trust_env=False)


def check(response: httpx.Response) -> Any:
    """The answer's JSON body; an error answer ends the command with its message."""
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise SystemExit(f"error: {response.status_code} {message}")
    return response.json()


def unreachable(url: str, exc: httpx.HTTPError) -> str:
    """What to say when the service did not answer at all."""
    return f"error: cannot reach the service at {url}: {exc}"
