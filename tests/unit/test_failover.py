"""The move-on table: a test for every row, and properties over any answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from orchestrator.domain.failover import (
    DEAD,
    SPEND_LIMIT,
    Facts,
    Fail,
    Hold,
    MoveOn,
    Outcome,
    Route,
    Spend,
    decide,
)

ROUTE = Route(("upsampler", "fotor", "local"), 0)
LAST = Route(("upsampler", "fotor", "local"), 2)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.NOT_TAKEN,
        Outcome.INPUT_REJECTED,
        Outcome.PROVIDER_FAILED,
        Outcome.RESULT_FAILED,
        Outcome.CONFIRMED,
    ],
)
def test_a_dead_attempt_moves_on_to_the_next_provider(outcome: Outcome) -> None:
    assert decide(outcome, ROUTE, Facts()) == MoveOn("fotor", 1)


@pytest.mark.parametrize(
    "outcome",
    [Outcome.NOT_TAKEN, Outcome.PROVIDER_FAILED, Outcome.RESULT_FAILED, Outcome.CONFIRMED],
)
def test_after_the_last_provider_the_attempts_own_failure_stands(outcome: Outcome) -> None:
    assert decide(outcome, LAST, Facts()) == Fail()


def test_uncertain_never_moves_on_by_itself() -> None:
    assert decide(Outcome.UNCERTAIN, ROUTE, Facts()) == Hold()
    assert decide(Outcome.UNCERTAIN, ROUTE, Facts(retry_fits=False)) == Hold()


def test_input_bad_for_every_provider_fails_at_once() -> None:
    assert decide(Outcome.INPUT_BAD, ROUTE, Facts()) == Fail()


def test_a_deferred_submit_is_tried_again_while_it_fits() -> None:
    assert decide(Outcome.DEFERRED, ROUTE, Facts()) == Hold()


def test_a_deferred_submit_past_its_budget_moves_on() -> None:
    assert decide(Outcome.DEFERRED, ROUTE, Facts(retry_fits=False)) == MoveOn("fotor", 1)


def test_a_deferred_submit_at_a_provider_now_cooling_moves_on() -> None:
    facts = Facts(cooling=frozenset({"upsampler"}))
    assert decide(Outcome.DEFERRED, ROUTE, facts) == MoveOn("fotor", 1)


def test_a_deferred_submit_with_nowhere_else_to_go_keeps_trying() -> None:
    assert decide(Outcome.DEFERRED, Route(("upsampler",)), Facts(retry_fits=False)) == Hold()


def test_cooling_providers_are_passed_by() -> None:
    facts = Facts(cooling=frozenset({"fotor"}))
    assert decide(Outcome.PROVIDER_FAILED, ROUTE, facts) == MoveOn("local", 2)


def test_when_every_later_provider_is_cooling_the_first_one_waits_its_turn() -> None:
    facts = Facts(cooling=frozenset({"fotor", "local"}))
    assert decide(Outcome.PROVIDER_FAILED, ROUTE, facts) == MoveOn("fotor", 1)


def test_a_queued_attempt_at_a_cooling_provider_switches_to_a_warm_one() -> None:
    facts = Facts(cooling=frozenset({"upsampler"}))
    assert decide(Outcome.COOLING, ROUTE, facts) == MoveOn("fotor", 1)


def test_a_queued_attempt_waits_when_every_other_provider_is_cooling() -> None:
    facts = Facts(cooling=frozenset({"upsampler", "fotor", "local"}))
    assert decide(Outcome.COOLING, ROUTE, facts) == Hold()
    assert decide(Outcome.COOLING, LAST, Facts(cooling=frozenset({"local"}))) == Hold()


def test_a_provider_over_its_daily_cap_is_passed_by() -> None:
    spend = Spend(today={"fotor": 50.0}, caps={"fotor": 50.0})
    assert decide(Outcome.PROVIDER_FAILED, ROUTE, Facts(spend=spend)) == MoveOn("local", 2)


def test_when_only_the_spend_limits_stand_in_the_way_the_job_fails_with_spend_limit() -> None:
    spend = Spend(job_spent=4.0, max_cost=5.0, expected={"fotor": 2.0, "local": 2.0})
    assert decide(Outcome.PROVIDER_FAILED, ROUTE, Facts(spend=spend)) == Fail(SPEND_LIMIT)


def test_a_queued_attempt_over_its_spend_limit_moves_on_or_fails_with_spend_limit() -> None:
    spend = Spend(today={"upsampler": 100.0}, caps={"upsampler": 100.0})
    assert decide(Outcome.OVER_SPEND, ROUTE, Facts(spend=spend)) == MoveOn("fotor", 1)
    assert decide(Outcome.OVER_SPEND, LAST, Facts(spend=spend)) == Fail(SPEND_LIMIT)


def test_spend_within_limits() -> None:
    spend = Spend(job_spent=1.0, max_cost=3.0, expected={"fotor": 2.0}, caps={"fotor": 10.0})
    assert spend.allows("fotor")
    assert spend.allows("local")
    assert not Spend(today={"fotor": 9.0}, caps={"fotor": 10.0}, expected={"fotor": 2}).allows(
        "fotor"
    )


# Properties ------------------------------------------------------------------

routes = st.lists(
    st.sampled_from(["upsampler", "fotor", "local", "photio"]), min_size=1, max_size=4, unique=True
)
facts = st.builds(
    Facts,
    cooling=st.frozensets(st.sampled_from(["upsampler", "fotor", "local", "photio"])),
    spend=st.builds(
        Spend,
        job_spent=st.floats(0, 10),
        max_cost=st.none() | st.floats(0, 10),
        expected=st.dictionaries(st.sampled_from(["upsampler", "fotor"]), st.floats(0, 5)),
    ),
    retry_fits=st.booleans(),
)


@given(st.sampled_from(Outcome), routes, st.data(), facts)
def test_a_move_is_always_forward_and_only_from_a_dead_attempt(
    outcome: Outcome, providers: list[str], data: st.DataObject, given_facts: Facts
) -> None:
    index = data.draw(st.integers(0, len(providers) - 1))
    decision = decide(outcome, Route(tuple(providers), index), given_facts)
    if isinstance(decision, MoveOn):
        assert outcome in DEAD
        assert decision.index > index
        assert providers[decision.index] == decision.to
    if outcome is Outcome.UNCERTAIN:
        assert decision == Hold()


@dataclass
class Attempt:
    provider: str
    live: bool = True


@dataclass
class World:
    route: tuple[str, ...]
    index: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    done: bool = False


class ProviderAnswers(RuleBasedStateMachine):
    """Any sequence of provider answers (and operator confirmations) for one job:
    never two live attempts, and an uncertain attempt never ends by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World(("upsampler", "fotor", "local", "photio"))
        self.world.attempts.append(Attempt("upsampler"))
        self.uncertain = False

    def _answer(self, outcome: Outcome, answered: Facts) -> None:
        w = self.world
        if w.done:
            return
        if self.uncertain and outcome is not Outcome.CONFIRMED:
            # Only the operator (or the provider itself, which settles the job) ends it.
            outcome = Outcome.UNCERTAIN
        current = w.attempts[-1]
        decision = decide(outcome, Route(w.route, w.index), answered)
        if outcome is Outcome.UNCERTAIN:
            self.uncertain = True
            assert decision == Hold()
            return
        if isinstance(decision, Hold):
            return
        # The engine records the attempt's end in the same write as the move.
        current.live = False
        self.uncertain = False
        if isinstance(decision, MoveOn):
            w.index = decision.index
            w.attempts.append(Attempt(decision.to))
        else:
            w.done = True

    @rule(outcome=st.sampled_from(Outcome), answered=facts)
    def answer(self, outcome: Outcome, answered: Facts) -> None:
        self._answer(outcome, answered)

    @rule()
    def go_uncertain(self) -> None:
        self._answer(Outcome.UNCERTAIN, Facts())

    @invariant()
    def at_most_one_live_attempt(self) -> None:
        assert sum(a.live for a in self.world.attempts) <= 1

    @invariant()
    def each_provider_at_most_once(self) -> None:
        names = [a.provider for a in self.world.attempts]
        assert len(names) == len(set(names))


TestProviderAnswers = ProviderAnswers.TestCase
TestProviderAnswers.settings = settings(max_examples=100, stateful_step_count=20)
