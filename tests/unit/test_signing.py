from __future__ import annotations

import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner, InputSigner
from schemas.errors import NotFound

OLD, NEW = Secret("old-key-0123456789"), Secret("new-key-9876543210")


def test_job_token_round_trip() -> None:
    clock = FakeClock()
    signer = CallbackSigner([OLD], clock)
    token = signer.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    claims = signer.verify("upsampler", token)
    assert (claims.provider, claims.job_id) == ("upsampler", "job_1")


def test_token_for_another_provider_is_refused() -> None:
    clock = FakeClock()
    signer = CallbackSigner([OLD], clock)
    token = signer.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    with pytest.raises(NotFound):
        signer.verify("fotor", token)


def test_expiry_follows_the_injected_clock() -> None:
    clock = FakeClock()
    signer = CallbackSigner([OLD], clock)
    token = signer.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    clock.advance(59)
    signer.verify("upsampler", token)
    clock.advance(2)
    with pytest.raises(NotFound):
        signer.verify("upsampler", token)


def test_rotation_keeps_tokens_in_flight_valid() -> None:
    clock = FakeClock()
    before = CallbackSigner([OLD], clock)
    token = before.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    after = CallbackSigner([OLD, NEW], clock)
    assert after.verify("upsampler", token).job_id == "job_1"
    fresh = after.for_job("upsampler", "job_2", clock.now().timestamp() + 60)
    assert CallbackSigner([NEW], clock).verify("upsampler", fresh).job_id == "job_2"
    # Once the old key is retired, its tokens stop working.
    with pytest.raises(NotFound):
        CallbackSigner([NEW], clock).verify("upsampler", token)


@pytest.mark.parametrize(
    "token", ["", "x", "a.b", "eyJwIjoidXBzYW1wbGVyIn0.forged", "🙂" * 10, "." * 500]
)
def test_forged_tokens_are_not_found(token: str) -> None:
    with pytest.raises(NotFound):
        CallbackSigner([OLD], FakeClock()).verify("upsampler", token)


def test_account_token_has_no_job() -> None:
    signer = CallbackSigner([OLD], FakeClock())
    assert signer.verify("fotor", signer.for_account("fotor")).job_id is None


def test_input_tokens_cannot_be_used_as_callback_tokens() -> None:
    clock = FakeClock()
    token = InputSigner([OLD], clock).sign("job_1.png", clock.now().timestamp() + 60)
    with pytest.raises(NotFound):
        CallbackSigner([OLD], clock).verify("upsampler", token)
    assert InputSigner([OLD], clock).verify(token) == "job_1.png"


def test_secret_never_shows_in_repr() -> None:
    assert "old-key" not in repr(OLD) and "old-key" not in str(OLD)
    assert "old-key" not in repr([OLD])


def test_a_remembered_token_is_still_refused_for_another_provider_or_when_altered() -> None:
    clock = FakeClock()
    signer = CallbackSigner([OLD], clock)
    token = signer.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    signer.verify("upsampler", token)  # now remembered
    with pytest.raises(NotFound):
        signer.verify("fotor", token)
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for _ in range(2):  # a refusal is never remembered as a success
        with pytest.raises(NotFound):
            signer.verify("upsampler", altered)
    assert signer.verify("upsampler", token).job_id == "job_1"


def test_new_keys_forget_what_the_old_signer_verified() -> None:
    clock = FakeClock()
    old = CallbackSigner([OLD], clock)
    token = old.for_job("upsampler", "job_1", clock.now().timestamp() + 60)
    old.verify("upsampler", token)
    with pytest.raises(NotFound):
        CallbackSigner([NEW], clock).verify("upsampler", token)


def test_many_distinct_tokens_all_verify_past_the_memory_bound() -> None:
    from orchestrator.security.signing import VERIFIED_CACHE_SIZE

    clock = FakeClock()
    signer = CallbackSigner([OLD], clock)
    expires = clock.now().timestamp() + 60
    tokens = [
        signer.for_job("upsampler", f"job_{i}", expires) for i in range(VERIFIED_CACHE_SIZE + 5)
    ]
    for i, token in enumerate(tokens):
        assert signer.verify("upsampler", token).job_id == f"job_{i}"
    assert signer.verify("upsampler", tokens[0]).job_id == "job_0"
    clock.advance(61)
    with pytest.raises(NotFound):
        signer.verify("upsampler", tokens[-1])
