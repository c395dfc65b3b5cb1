"""When a job moves on to the next provider of its route: one pure table.

No clock, no I/O. The caller tells what became of the current attempt (an
``Outcome``), where the job is on its route, and the facts of the moment (which
providers are cooling down, what was spent); the table answers ``MoveOn`` (to
which provider), ``Fail`` (with which reason) or ``Hold`` (stay with this
attempt: try the same provider again later, or wait for an operator).

A move is only ever answered for an attempt known to be dead, so the job is
never paid twice: ``uncertain`` (the provider may still be working and billing)
holds until an operator confirms it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

SPEND_LIMIT = "spend_limit"


class Outcome(StrEnum):
    """What became of the current attempt."""

    # Refused before the provider took the job: auth, credit, quota, or never sent.
    NOT_TAKEN = "not_taken"
    # This provider alone refuses the input (its size or format limits).
    INPUT_REJECTED = "input_rejected"
    # The input is bad for every provider: not an image, too large everywhere.
    INPUT_BAD = "input_bad"
    # 429 or 5xx at submit: not taken, may be tried again at the same provider.
    DEFERRED = "deferred"
    # Accepted, then reported failure.
    PROVIDER_FAILED = "provider_failed"
    # The result expired or failed its checks.
    RESULT_FAILED = "result_failed"
    # No answer to the submit: the provider may still be working and may bill.
    UNCERTAIN = "uncertain"
    # An operator confirmed that an uncertain attempt is dead.
    CONFIRMED = "confirmed"
    # Nothing sent yet, and the attempt's provider is cooling down.
    COOLING = "cooling"
    # Nothing sent yet, and the attempt's provider would pass a spend limit.
    OVER_SPEND = "over_spend"


# The outcomes after which the attempt is known dead: nothing can bill any more.
DEAD: frozenset[Outcome] = frozenset(
    {
        Outcome.NOT_TAKEN,
        Outcome.INPUT_REJECTED,
        Outcome.INPUT_BAD,
        Outcome.DEFERRED,
        Outcome.PROVIDER_FAILED,
        Outcome.RESULT_FAILED,
        Outcome.CONFIRMED,
        Outcome.COOLING,
        Outcome.OVER_SPEND,
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    """The job's providers in order and the index of the current attempt's."""

    providers: tuple[str, ...]
    index: int = 0

    @property
    def current(self) -> str:
        return self.providers[self.index]


@dataclass(frozen=True, slots=True)
class Spend:
    """Spend facts, in the providers' credits."""

    job_spent: float = 0.0  # reported by the job's earlier attempts
    max_cost: float | None = None  # the job's own limit
    # What one job is expected to cost at each provider (from its reported costs);
    # unknown counts as nothing.
    expected: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    today: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    caps: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def allows(self, provider: str) -> bool:
        """Whether one more job at ``provider`` stays within every limit."""
        cost = self.expected.get(provider, 0.0)
        if self.max_cost is not None and self.job_spent + cost > self.max_cost:
            return False
        cap = self.caps.get(provider)
        if cap is None:
            return True
        spent = self.today.get(provider, 0.0)
        return spent < cap and spent + cost <= cap


@dataclass(frozen=True, slots=True)
class Facts:
    cooling: frozenset[str] = frozenset()
    spend: Spend = field(default_factory=Spend)
    # A deferred submit may still be tried again at the same provider: its wait ends
    # before the job's deadline, and the attempt has deferrals to spare.
    retry_fits: bool = True


@dataclass(frozen=True, slots=True)
class MoveOn:
    to: str
    index: int


@dataclass(frozen=True, slots=True)
class Fail:
    # None: the attempt's own failure stands (nothing left to try).
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    pass


Decision = MoveOn | Fail | Hold


def decide(outcome: Outcome, route: Route, facts: Facts) -> Decision:
    """The table. Every row has its unit test (``tests/unit/test_failover.py``)."""
    if outcome is Outcome.UNCERTAIN:
        return Hold()
    if outcome is Outcome.INPUT_BAD:
        return Fail()
    if outcome is Outcome.DEFERRED:
        if facts.retry_fits and route.current not in facts.cooling:
            return Hold()
        # Given up on this provider for now; with nowhere else to go, keep trying
        # it (until the job's deadline), as a single-provider job always has.
        nxt = choose(route, facts)
        return Hold() if isinstance(nxt, Fail) and nxt.reason is None else nxt
    if outcome is Outcome.COOLING:
        nxt = choose(route, facts)
        # Every later provider is cooling too, or none is left: wait for this one.
        if isinstance(nxt, Fail) and nxt.reason is None:
            return Hold()
        if isinstance(nxt, MoveOn) and nxt.to in facts.cooling:
            return Hold()
        return nxt
    if outcome is Outcome.OVER_SPEND:
        nxt = choose(route, facts)
        return Fail(SPEND_LIMIT) if isinstance(nxt, Fail) else nxt
    return choose(route, facts)


def choose(route: Route, facts: Facts) -> MoveOn | Fail:
    """The provider after the current one: the first within the spend limits that
    is not cooling down, else the first within them (it waits for its cool-down).
    ``Fail(spend_limit)`` when only the limits stand in the way, ``Fail()`` when no
    provider is left."""
    later = list(enumerate(route.providers))[route.index + 1 :]
    if not later:
        return Fail()
    affordable = [(i, p) for i, p in later if facts.spend.allows(p)]
    if not affordable:
        return Fail(SPEND_LIMIT)
    warm = [(i, p) for i, p in affordable if p not in facts.cooling]
    index, provider = (warm or affordable)[0]
    return MoveOn(provider, index)
