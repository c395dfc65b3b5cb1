"""The cool-down state machine: failures, cool-down, one probe, reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.cooldown import (
    CooldownPolicy,
    Health,
    HealthState,
    admit,
    cooling,
    failed,
    succeeded,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = CooldownPolicy(threshold=3, base_s=10, factor=2, cap_s=35, probe_lease_s=60)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def fail_times(health: Health, n: int, now: datetime) -> Health:
    for _ in range(n):
        health = failed(health, now, POLICY)
    return health


def test_failures_below_the_threshold_leave_the_provider_healthy() -> None:
    h = fail_times(Health("fotor"), 2, T0)
    assert h.state(T0) is HealthState.HEALTHY
    assert admit(h, "job_a", T0, POLICY)[0]


def test_the_threshold_starts_a_cool_down_that_skips_the_provider() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    assert h.state(at(5)) is HealthState.COOLING
    assert cooling(h, at(5))
    assert admit(h, "job_a", at(5), POLICY) == (False, h)
    assert h.cooldowns == 1


def test_after_the_cool_down_one_job_is_the_probe_and_others_wait() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    allowed, probing = admit(h, "job_a", at(11), POLICY)
    assert allowed and probing.probe_job == "job_a"
    assert probing.state(at(11)) is HealthState.PROBING
    assert admit(probing, "job_b", at(12), POLICY)[0] is False
    assert admit(probing, "job_a", at(12), POLICY)[0] is True


def test_a_probe_that_never_answers_frees_the_provider_for_another() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    _, probing = admit(h, "job_a", at(11), POLICY)
    allowed, again = admit(probing, "job_b", at(72), POLICY)
    assert allowed and again.probe_job == "job_b"


def test_a_failed_probe_starts_a_longer_cool_down_up_to_the_cap() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    lengths = [h.cooldown_s]
    now = T0
    for _ in range(3):
        now = h.until or now
        _, h = admit(h, "probe", now, POLICY)
        h = failed(h, now, POLICY)
        lengths.append(h.cooldown_s)
    assert lengths == [10, 20, 35, 35]


def test_a_success_resets_everything() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    _, h = admit(h, "probe", at(11), POLICY)
    ok = succeeded(h)
    assert ok.state(at(11)) is HealthState.HEALTHY
    assert ok.failures == 0 and ok.cooldown_s == 0
    assert ok.total_failures == 3  # the counters stay


def test_failures_during_a_cool_down_do_not_extend_it() -> None:
    h = fail_times(Health("fotor"), 3, T0)
    later = failed(h, at(5), POLICY)
    assert later.until == h.until


@given(st.lists(st.sampled_from(["fail", "ok", "admit"]), max_size=40), st.data())
def test_at_most_one_probe_is_ever_out(steps: list[str], data: st.DataObject) -> None:
    h = Health("fotor")
    now = T0
    for i, step in enumerate(steps):
        now = now + timedelta(seconds=data.draw(st.floats(0, 30)))
        if step == "fail":
            h = failed(h, now, POLICY)
        elif step == "ok":
            h = succeeded(h)
        else:
            before = h.state(now)
            allowed, h = admit(h, f"job_{i}", now, POLICY)
            if before is HealthState.COOLING:
                assert not allowed
            if before is HealthState.PROBING:
                assert not allowed  # a fresh job id is never the probe already out
        assert h.until is None or h.cooldown_s > 0
