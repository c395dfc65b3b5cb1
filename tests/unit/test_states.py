"""Every edge of the job state machine, the illegal ones too."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.states import (
    DUE_STATES,
    TRANSITIONS,
    Event,
    has_due_work,
    next_state,
    provider_event,
)
from schemas.jobs import TERMINAL_STATES, JobState, UpdateStatus

Q, SG, SD, F = JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.FETCHING
OK, X, U, C = JobState.SUCCEEDED, JobState.FAILED, JobState.UNCERTAIN, JobState.CANCELLED

EXPECTED = {
    (Q, Event.SUBMIT_STARTED): SG,
    (SG, Event.SUBMIT_DEFERRED): Q,
    (SG, Event.SUBMIT_ACCEPTED): SD,
    (SG, Event.SUBMIT_REJECTED): X,
    (SG, Event.SUBMIT_UNCERTAIN): U,
    (SG, Event.PROVIDER_SUCCEEDED): F,
    (SG, Event.PROVIDER_FAILED): X,
    (SD, Event.PROVIDER_SUCCEEDED): F,
    (SD, Event.PROVIDER_FAILED): X,
    (U, Event.PROVIDER_SUCCEEDED): F,
    (U, Event.PROVIDER_FAILED): X,
    (F, Event.RESULT_STORED): OK,
    (F, Event.RESULT_FAILED): X,
    (F, Event.RESULT_REFRESH): SD,
    (Q, Event.DEADLINE): X,
    (SD, Event.DEADLINE): X,
    (F, Event.DEADLINE): X,
    (Q, Event.CANCEL): C,
    (SG, Event.CANCEL): C,
    (SD, Event.CANCEL): C,
    (F, Event.CANCEL): C,
    (U, Event.CANCEL): C,
    (Q, Event.OVER_SPEND): X,
    (Q, Event.FAIL_OVER): Q,
    (SG, Event.FAIL_OVER): Q,
    (SD, Event.FAIL_OVER): Q,
    (F, Event.FAIL_OVER): Q,
    (U, Event.FAIL_OVER): Q,
}


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(JobState, Event)), ids=lambda v: str(v)
)
def test_every_pair(state: JobState, event: Event) -> None:
    assert next_state(state, event) == EXPECTED.get((state, event))


def test_table_is_exactly_the_expected_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_never_change(state: JobState) -> None:
    assert all(next_state(state, event) is None for event in Event)


def test_only_fetching_reaches_succeeded() -> None:
    sources = {s for (s, _), t in TRANSITIONS.items() if t is OK}
    assert sources == {F}


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_any_sequence_of_events_stays_in_the_table(events: list[Event]) -> None:
    """Applying events in any order, duplicates included: once terminal, always terminal."""
    state = Q
    for event in events:
        before = state
        state = next_state(state, event) or state
        if before.terminal:
            assert state is before


@given(st.permutations([Event.PROVIDER_SUCCEEDED, Event.PROVIDER_FAILED, Event.PROVIDER_RUNNING]))
def test_racing_provider_signals_have_one_winner(order: list[Event]) -> None:
    """From submitted, the first terminal-bound signal wins; later ones change nothing."""
    state = SD
    moves = 0
    for event in order:
        target = next_state(state, event)
        if target is not None and target is not state:
            moves += 1
            state = target
    assert moves == 1
    assert state in (F, X)


@pytest.mark.parametrize(
    ("state", "due"),
    [(Q, True), (SG, True), (SD, True), (F, True), (OK, False), (X, False), (C, False), (U, False)],
)
def test_which_states_have_due_work(state: JobState, due: bool) -> None:
    """Queued, submitting (a cut-off call), submitted and fetching jobs have work when
    due; final and uncertain ones never do (uncertain waits for the provider's word)."""
    assert has_due_work(state) is due
    assert (state in DUE_STATES) is due


def test_every_state_a_job_moves_into_without_due_work_is_final_or_uncertain() -> None:
    targets = set(TRANSITIONS.values())
    assert {t for t in targets if not has_due_work(t)} == {*TERMINAL_STATES, U}


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (UpdateStatus.RUNNING, Event.PROVIDER_RUNNING),
        (UpdateStatus.SUCCEEDED, Event.PROVIDER_SUCCEEDED),
        (UpdateStatus.FAILED, Event.PROVIDER_FAILED),
    ],
)
def test_each_provider_signal_is_one_event(status: UpdateStatus, event: Event) -> None:
    assert provider_event(status) is event
