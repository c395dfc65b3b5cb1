"""The invariants the soak checks, as pure functions of what it observed.

Each returns a :class:`Check`: one row of the table, with its figure and whether it held.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.soak.api import ServerError
from tests.soak.procs import Series
from tests.soak.subscriber import Received
from tests.soak.topology import Kill

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
SETTLED = TERMINAL | {"uncertain"}
INBOX_FINAL = frozenset({"applied", "duplicate", "unmatched", "dead"})
SANDBOXED = ("upsampler", "fotor", "photio", "artnex")
# Roles whose death can cut a submit off: the processes that run the loops.
SUBMITTERS = frozenset({"serve", "worker"})
CLOCK_SLACK_S = 1.0

Job = Mapping[str, Any]
History = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Check:
    name: str
    figure: str
    ok: bool
    detail: str = ""


def _at(entry: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")).timestamp()


def settled(jobs: Mapping[str, Job]) -> Check:
    states = Counter(str(j["state"]) for j in jobs.values())
    open_ = sum(n for s, n in states.items() if s not in SETTLED)
    figure = f"{open_} of {len(jobs)} not settled"
    detail = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
    return Check(
        "every job ends terminal (or uncertain)", figure, open_ == 0 and bool(jobs), detail
    )


def uncertain_explained(
    jobs: Mapping[str, Job],
    histories: Mapping[str, History],
    kills: Sequence[Kill],
    sandbox: Mapping[str, Mapping[str, int]],
) -> Check:
    """An uncertain job's submit was cut off by a kill of a process running the loops
    (between the submit starting and the job turning uncertain), or timed out at a
    sandbox that really held its answer back (``submits_timed_out``)."""
    by_kill = 0
    timed_out: Counter[str] = Counter()
    unexplained: list[str] = []
    messages: dict[str, list[str]] = {}
    for job_id, job in jobs.items():
        if job["state"] != "uncertain":
            continue
        history = histories.get(job_id, [])
        entry = next((h for h in reversed(history) if h["to"] == "uncertain"), None)
        started = next((h for h in reversed(history) if h["to"] == "submitting"), None)
        if entry is None or started is None:
            unexplained.append(f"{job_id} (no submit in its history)")
        elif entry["cause"] == "recovery":
            lo, hi = _at(started) - CLOCK_SLACK_S, _at(entry) + CLOCK_SLACK_S
            if any(k.role in SUBMITTERS and lo <= k.at <= hi for k in kills):
                by_kill += 1
            else:
                unexplained.append(f"{job_id} (recovery with no kill of a submitter meanwhile)")
        elif entry["cause"] == "submit":
            timed_out[str(job["provider"])] += 1
            failure = job.get("failure") or {}
            messages.setdefault(str(job["provider"]), []).append(
                f"{job_id}: {failure.get('message', '?')}"
            )
        else:
            unexplained.append(f"{job_id} (cause {entry['cause']})")
    for provider, n in sorted(timed_out.items()):
        held_back = sandbox.get(provider, {}).get("submits_timed_out", 0)
        if n > held_back:
            unexplained.append(
                f"{provider}: {n} timed out, the sandbox held back {held_back} "
                f"({'; '.join(messages[provider][:3])})"
            )
    total = by_kill + sum(timed_out.values()) + len(unexplained)
    figure = (
        f"{total} uncertain: {by_kill} cut off by a kill, {sum(timed_out.values())} "
        f"by a submit timeout, {len(unexplained)} unexplained"
    )
    return Check(
        "uncertain only where a submit was cut off",
        figure,
        not unexplained,
        "; ".join(unexplained[:5]),
    )


def no_double_payment(
    jobs: Mapping[str, Job],
    histories: Mapping[str, History],
    sandbox: Mapping[str, Mapping[str, int]],
) -> Check:
    """The sandbox created no more jobs than the service's submits that may have been
    taken (a submit that ended in anything but a deferral), and no provider job id is
    held by two jobs."""
    billable: Counter[str] = Counter()
    for job_id, history in histories.items():
        provider = str(jobs[job_id]["provider"]) if job_id in jobs else "?"
        billable[provider] += sum(
            1 for h in history if h["from"] == "submitting" and h["to"] != "queued"
        )
        if jobs.get(job_id, {}).get("state") == "submitting":
            billable[provider] += 1
    excess = {
        p: sandbox.get(p, {}).get("jobs_created", 0) - billable[p]
        for p in SANDBOXED
        if sandbox.get(p, {}).get("jobs_created", 0) > billable[p]
    }
    ids = Counter(
        (j["provider"], j["provider_job_id"]) for j in jobs.values() if j.get("provider_job_id")
    )
    shared = {k: n for k, n in ids.items() if n > 1}
    created = sum(sandbox.get(p, {}).get("jobs_created", 0) for p in SANDBOXED)
    figure = (
        f"{sum(excess.values())} paid twice ({created} created for {sum(billable.values())} "
        f"submits); {len(shared)} provider ids shared"
    )
    detail = "; ".join(
        [f"{p}: +{n}" for p, n in excess.items()]
        + [f"{k} x{n}" for k, n in list(shared.items())[:5]]
    )
    return Check("zero duplicate paid submissions", figure, not excess and not shared, detail)


def one_terminal_transition(jobs: Mapping[str, Job], histories: Mapping[str, History]) -> Check:
    wrong = []
    for job_id, job in jobs.items():
        n = sum(1 for h in histories.get(job_id, []) if h["to"] in TERMINAL)
        expected = 1 if job["state"] in TERMINAL else 0
        if n != expected:
            wrong.append(f"{job_id} {job['state']}: {n}")
    return Check(
        "exactly one terminal transition per job",
        f"{len(wrong)} of {len(jobs)} jobs with another count",
        not wrong,
        "; ".join(wrong[:5]),
    )


def results_match(jobs: Mapping[str, Job], fetched: Mapping[str, tuple[int, str] | str]) -> Check:
    succeeded = [i for i, j in jobs.items() if j["state"] == "succeeded"]
    bad = []
    for job_id in succeeded:
        got = fetched.get(job_id, "not fetched")
        want = jobs[job_id].get("result") or {}
        if isinstance(got, str):
            bad.append(f"{job_id}: {got}")
        elif got != (want.get("bytes"), want.get("sha256")):
            bad.append(f"{job_id}: {got[0]} bytes, recorded {want.get('bytes')}")
    return Check(
        "every result matches its sha256 and size",
        f"{len(bad)} of {len(succeeded)} results differ",
        not bad,
        "; ".join(bad[:5]),
    )


def acked_callbacks_in_inbox(
    deliveries: Iterable[Mapping[str, Any]], sandbox: Mapping[str, Mapping[str, int]]
) -> Check:
    """Every callback the service answered 2xx (counted by the sandbox that sent it) is
    in the inbox: per provider, at least as many live deliveries as acknowledgements
    (more where a kill came between the commit and the answer, and the sandbox retried)."""
    stored: Counter[str] = Counter(
        str(d["provider"]) for d in deliveries if d.get("source", "live") == "live"
    )
    short = {}
    parts = []
    for p in SANDBOXED:
        acked = sandbox.get(p, {}).get("callbacks_sent", 0)
        if acked or stored[p]:
            parts.append(f"{p} {stored[p]}/{acked}")
        if stored[p] < acked:
            short[p] = acked - stored[p]
    figure = f"{sum(short.values())} acked but missing (inbox/acked: {', '.join(parts)})"
    return Check("every acknowledged callback is in the inbox", figure, not short)


def inbox_settled(deliveries: Iterable[Mapping[str, Any]]) -> Check:
    items = list(deliveries)
    statuses = Counter(str(d["status"]) for d in items)
    stray = [d for d in items if d["status"] not in INBOX_FINAL]
    reasonless = [d for d in items if d["status"] == "dead" and not d.get("error")]
    figure = (
        f"{len(stray)} not final, {len(reasonless)} dead without a reason ({len(items)} deliveries)"
    )
    detail = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
    if stray:
        detail += "; e.g. " + ", ".join(
            f"{d['id']} {d['provider']} {d['status']}" for d in stray[:3]
        )
    return Check(
        "inbox: every delivery applied/duplicate/unmatched/dead",
        figure,
        not stray and not reasonless,
        detail,
    )


def events_delivered(
    events: Sequence[Mapping[str, Any]], received: Sequence[Received], verify: Any
) -> Check:
    """Every event reached the subscriber, signed; per job in order (first arrival of
    each webhook-id); a repeat carries the same body."""
    first: dict[str, Received] = {}
    changed = 0
    for r in received:
        seen = first.setdefault(r.webhook_id, r)
        if seen.body != r.body:
            changed += 1
    missing = [e["id"] for e in events if e["id"] not in first]
    per_job: dict[str, list[str]] = defaultdict(list)
    for r in first.values():  # dicts keep insertion (arrival) order
        if r.job_id:
            per_job[r.job_id].append(r.webhook_id)
    disordered = [job for job, ids in per_job.items() if ids != sorted(ids)]
    unsigned = 0
    for r in first.values():
        try:
            verify(r.body, r.headers)
        except Exception:
            unsigned += 1
    figure = (
        f"{len(missing)} of {len(events)} missing, {len(disordered)} jobs out of order, "
        f"{unsigned} bad signatures, {changed} changed repeats ({len(received)} received)"
    )
    ok = not missing and not disordered and not unsigned and not changed
    detail = ""
    if missing:
        detail = "missing e.g. " + ", ".join(missing[:3])
    if disordered:
        job = disordered[0]
        detail += f" {job} arrived as {per_job[job]}"
    return Check("every event reaches the subscriber, per job in order", figure, ok, detail.strip())


def no_server_errors(
    errors: Sequence[ServerError], bad: Sequence[ServerError], total: int
) -> Check:
    allowed = len(errors) - len(bad)
    kinds = Counter(
        f"{e.method} {e.path.split('/')[1] if '/' in e.path else e.path} {e.status}" for e in bad
    )
    return Check(
        "no 5xx but 503 with Retry-After",
        f"{len(bad)} of {total} requests (503 with Retry-After: {allowed})",
        not bad,
        ", ".join(f"{k} x{n}" for k, n in kinds.most_common(5)),
    )


def rss_flat(series: Iterable[Series], min_span_s: float, limit: float = 0.10) -> Check:
    """RSS at the end of each process's second half against its start (median of 3 samples)."""
    worst: tuple[float, str] | None = None
    skipped = 0
    for s in series:
        if len(s.points) < 8 or s.points[-1][0] - s.points[0][0] < min_span_s:
            skipped += 1
            continue
        t0, t1 = s.points[0][0], s.points[-1][0]
        half = [rss for t, rss in s.points if t >= (t0 + t1) / 2]
        if len(half) < 4:
            skipped += 1
            continue
        growth = statistics.median(half[-3:]) / statistics.median(half[:3]) - 1
        if worst is None or growth > worst[0]:
            worst = (growth, f"{s.label} pid {s.pid}, {half[0] // 1024} -> {half[-1] // 1024} MB")
    if worst is None:
        return Check(
            "RSS flat over the second half (10%)", f"no process lived {min_span_s:.0f}s", False
        )
    return Check(
        "RSS flat over the second half (10%)",
        f"worst {worst[0] * 100:+.1f}% ({worst[1]}); {skipped} short-lived skipped",
        worst[0] <= limit,
    )


def idle_cpu(name: str, percent: float | None, window_s: float, limit: float = 1.0) -> Check:
    if percent is None:
        return Check(name, "not measured", False)
    return Check(name, f"{percent:.2f}% of a core over {window_s:.0f}s", percent < limit)


def submits_answered(accepted: int, refused: Sequence[str]) -> Check:
    return Check(
        "every job submit answered 200/202",
        f"{len(refused)} of {accepted + len(refused)} refused or unanswered",
        not refused,
        "; ".join(refused[:3]),
    )


def nothing_left(leftover: Sequence[str]) -> Check:
    return Check(
        "no process left behind",
        f"{len(leftover)} processes of the run alive after stopping",
        not leftover,
        "; ".join(leftover[:10]),
    )
