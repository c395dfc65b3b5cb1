"""The rule for mounting the sandbox in `upscale serve`, case by case."""

from __future__ import annotations

import pytest

from orchestrator.common.settings import load_settings
from orchestrator.sandbox.exposure import decide_sandbox_mount, is_loopback_host


@pytest.mark.parametrize(
    ("mode", "bind_host", "public_url", "mounted"),
    [
        ("auto", "127.0.0.1", None, True),
        ("auto", "localhost", "http://localhost:8000", True),
        ("auto", "::1", "http://[::1]:8000", True),
        ("auto", "127.0.0.1", "http://127.0.0.5:9000", True),
        # The README's deployment example.
        ("auto", "0.0.0.0", "https://upscale.example.com", False),
        ("auto", "0.0.0.0", None, False),
        ("auto", "::", None, False),
        ("auto", "192.168.1.10", None, False),
        # Loopback listener behind a public proxy: the public URL says it is public.
        ("auto", "127.0.0.1", "https://upscale.example.com", False),
        ("auto", "127.0.0.1", "http://10.0.0.5:8000", False),
        # An ASGI server started without the CLI: the bind host is unknown.
        ("auto", None, None, False),
        ("on", "0.0.0.0", "https://upscale.example.com", True),
        ("off", "127.0.0.1", None, False),
    ],
)
def test_mount_rule(
    mode: str, bind_host: str | None, public_url: str | None, mounted: bool
) -> None:
    decision = decide_sandbox_mount(mode, bind_host=bind_host, public_url=public_url)
    assert decision.mounted is mounted
    assert decision.reason


def test_reason_names_the_bind_address() -> None:
    decision = decide_sandbox_mount("auto", bind_host="0.0.0.0", public_url=None)
    assert "0.0.0.0" in decision.reason


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("upscale.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_setting_defaults_to_auto_and_rejects_nonsense() -> None:
    assert load_settings({}).sandbox == "auto"
    assert load_settings({"UPSCALE_SANDBOX": "OFF"}).sandbox == "off"
    with pytest.raises(ValueError, match="UPSCALE_SANDBOX"):
        load_settings({"UPSCALE_SANDBOX": "maybe"})
