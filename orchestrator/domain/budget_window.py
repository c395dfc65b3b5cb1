"""The arithmetic of a sliding-window budget: pure, no clock, no store.

A budget is a few windows, each ``(limit, period_s)``: at most ``limit`` calls
in any ``period_s`` seconds, plus an optional cooldown between two calls and a
cooldown until a given time (a provider's ``Retry-After``). The store keeps one
timestamp per call granted and asks these functions what they mean.

A window is full when its ``limit``-th most recent call is still inside it: the
call after that may be made when that one ages out. So a decision needs only a
few of the most recent calls, by rank (1 is the latest), never the whole window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Window = tuple[int, float]  # (calls, period_s); a limit <= 0 is no limit


def limited(windows: Sequence[Window]) -> list[Window]:
    """The windows that limit anything."""
    return [(limit, period) for limit, period in windows if limit > 0]


def horizon_s(windows: Sequence[Window], cooldown_s: float) -> float:
    """How far back a call still counts; 0: calls need not be kept at all."""
    periods = [period for _, period in limited(windows)]
    if not periods and cooldown_s <= 0:
        return 0.0
    return max([cooldown_s, *periods])


def ranks(windows: Sequence[Window], cooldown_s: float) -> list[int]:
    """Which of the most recent calls a decision reads (1: the latest), in order."""
    wanted = {limit for limit, _ in limited(windows)}
    if cooldown_s > 0:
        wanted.add(1)
    return sorted(wanted)


def wait_s(
    *,
    now: float,
    windows: Sequence[Window],
    cooldown_s: float,
    cooldown_until: float | None,
    recent: Mapping[int, float],
) -> float:
    """Seconds until one more call may be made; 0 if it may be made now.

    ``recent`` maps a rank from :func:`ranks` to that call's time (a rank with
    no call is absent): ``recent[1]`` is the latest call."""
    waits = [0.0]
    if cooldown_until is not None:
        waits.append(cooldown_until - now)
    for limit, period in limited(windows):
        pivot = recent.get(limit)
        if pivot is not None:
            # Positive only when the window holds ``limit`` calls already.
            waits.append(pivot + period - now)
    if cooldown_s > 0 and 1 in recent:
        waits.append(recent[1] + cooldown_s - now)
    return max(waits)
