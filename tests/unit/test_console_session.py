"""Console sessions: what a cookie proves, and for how long."""

from __future__ import annotations

from orchestrator.common.settings import Secret
from receiver.console.session import MAX_AGE_S, Sessions

KEYS = (Secret("old-signing-key"), Secret("new-signing-key"))
TOKENS = (Secret("token-one"), Secret("token-two"))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_signs_in_and_the_cookie_names_it_without_holding_it() -> None:
    sessions = Sessions(KEYS, TOKENS, secure=False)
    cookie = sessions.sign_in(" token-two ")
    assert cookie is not None and "token-two" not in cookie
    session = sessions.read(cookie)
    assert session is not None and session.token_id == sessions.fingerprint("token-two")
    assert sessions.csrf_ok(session, session.csrf)
    assert not sessions.csrf_ok(session, None) and not sessions.csrf_ok(session, "")
    assert sessions.sign_in("token-three") is None and sessions.sign_in("") is None


def test_a_session_ends_after_its_max_age() -> None:
    clock = Clock()
    sessions = Sessions(KEYS, TOKENS, secure=False, clock=clock)
    cookie = sessions.sign_in("token-one")
    assert cookie is not None
    clock.now += MAX_AGE_S - 5
    assert sessions.read(cookie) is not None
    clock.now += 10
    assert sessions.read(cookie) is None


def test_rotating_signing_keys_keeps_sessions_while_the_old_key_is_configured() -> None:
    before = Sessions(KEYS[:1], TOKENS, secure=False)
    cookie = before.sign_in("token-one")
    assert cookie is not None
    assert Sessions(KEYS, TOKENS, secure=False).read(cookie) is not None  # a new key added
    assert Sessions(KEYS[1:], TOKENS, secure=False).read(cookie) is None  # the old one gone


def test_removing_a_token_ends_its_sessions_only() -> None:
    sessions = Sessions(KEYS, TOKENS, secure=False)
    one, two = sessions.sign_in("token-one"), sessions.sign_in("token-two")
    assert one is not None and two is not None
    after = Sessions(KEYS, TOKENS[1:], secure=False)
    assert after.read(one) is None
    assert after.read(two) is not None


def test_the_cookie_flags() -> None:
    header = Sessions(KEYS, TOKENS, secure=True).cookie_header("v")
    assert header.startswith("upscale_console=v;")
    for flag in ("Path=/console", f"Max-Age={MAX_AGE_S}", "HttpOnly", "SameSite=Strict", "Secure"):
        assert flag in header
    assert "Secure" not in Sessions(KEYS, TOKENS, secure=False).cookie_header("v")
    assert "Max-Age=0" in Sessions(KEYS, TOKENS, secure=False).cleared_cookie_header()
