"""The engine's own settings: deadlines, timeouts, leases, polling and concurrency."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.store_retry import STORE_RETRY_S
from orchestrator.domain.backoff import PollPolicy
from orchestrator.domain.cooldown import CooldownPolicy

# Extra time a submit call holds its job beyond the call's own timeout.
SUBMIT_LEASE_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    public_base: str
    job_deadline_s: float
    # How long a submit call may take; per provider where it differs (a synchronous
    # provider answers with the result, so its call may take much longer).
    submit_timeout_s: float
    input_url_ttl_s: float
    poll: PollPolicy
    concurrency: int = 8
    verify_callbacks: frozenset[str] = frozenset()
    stuck_after_s: float = 900.0
    # The longest the loop sleeps with nothing due. In one process every callback
    # wakes it at once; a worker beside separate web processes looks this often.
    max_idle_s: float = 60.0
    # How long a worker holds a due job; a dead worker's jobs are taken over after it.
    lease_s: float = 300.0
    submit_timeouts_s: Mapping[str, float] = field(default_factory=dict)
    # Routing: named routes, each provider's daily spend cap in credits, the
    # cool-down of failing providers, and the deferred submits one provider of a
    # route gets before the job moves on.
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    spend_caps: Mapping[str, float] = field(default_factory=dict)
    cooldown: CooldownPolicy = field(default_factory=CooldownPolicy)
    failover_submit_tries: int = 3

    def submit_hold_s(self, provider: str) -> float:
        """How long a job is held in ``submitting`` for its provider's call: a worker
        killed during the call leaves the job ``uncertain`` once this has passed."""
        return self.submit_timeouts_s.get(provider, self.submit_timeout_s) + SUBMIT_LEASE_MARGIN_S

    @property
    def longest_submit_hold_s(self) -> float:
        """The longest of them: how long an answer to any submit may still come."""
        longest = max([self.submit_timeout_s, *self.submit_timeouts_s.values()])
        return longest + SUBMIT_LEASE_MARGIN_S

    @property
    def longest_lease_s(self) -> float:
        """The longest a job in ``submitting`` is held: by its submit call, or by a
        worker that took it over when that call's hold ran out."""
        return max(self.lease_s, self.longest_submit_hold_s)

    # Waits between attempts to record a provider's submit answer the store refused.
    store_retry_s: tuple[float, ...] = STORE_RETRY_S
