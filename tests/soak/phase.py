"""One phase of the soak: start a topology, load it while faults and operators act,
let it settle, measure it waiting, read back what happened and check the invariants."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from tests.bench.util import note
from tests.e2e.harness import Sandbox, start_sandbox
from tests.soak import faults, invariants
from tests.soak.api import AnswerLog, Api
from tests.soak.collect import all_jobs, deliveries_with_status, observe
from tests.soak.config import PhaseSize, SoakConfig
from tests.soak.invariants import SETTLED, Check
from tests.soak.load import job_specs, run_load
from tests.soak.operators import Operators
from tests.soak.procs import Sampler, cpu_s, describe, kill_pids, tagged_pids
from tests.soak.subscriber import Subscriber
from tests.soak.topology import Topology, fotor_webhook_url, postgres_topology, sqlite_topology


@dataclass
class PhaseReport:
    name: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Chaos:
    """Timed actions during the load, each in a thread of its own, all joined at the end."""

    def __init__(self, stop: threading.Event, notes: list[str]) -> None:
        self._stop = stop
        self._threads: list[threading.Thread] = []
        self._notes = notes

    def at(self, delay_s: float, name: str, action: Callable[[], object]) -> None:
        def run() -> None:
            if self._stop.wait(delay_s):
                return
            try:
                outcome = action()
            except Exception as exc:
                outcome = f"failed: {type(exc).__name__}: {exc}"
            self._notes.append(f"t+{delay_s:5.1f}s {name}: {outcome}")
            note(f"  chaos t+{delay_s:.0f}s {name}: {outcome}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))


def _wait(condition: Callable[[], bool], bound_s: float, every_s: float = 2.0) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def _cpu_percent(topology: Topology, window_s: float) -> float:
    pids = topology.process_tree()
    before = cpu_s(pids)
    time.sleep(window_s)
    return (cpu_s(pids) - before) / window_s * 100.0


def run_phase(
    config: SoakConfig, size: PhaseSize, tmp: Path, run_id: str, dsn: str | None = None
) -> PhaseReport:
    report = PhaseReport(size.name)
    rng = random.Random(f"{config.seed}-{size.name}")
    tmp.mkdir(parents=True, exist_ok=True)
    results_dir = tmp / "results"
    sandbox: Sandbox | None = None
    topology: Topology | None = None
    subscriber = Subscriber()
    answers = AnswerLog()
    stop = threading.Event()
    with (
        faults.results_tmpfs(results_dir, config.results_tmpfs_mb)
        if size.disk_full_s
        else _no_tmpfs(results_dir) as why_not
    ):
        if size.disk_full_s and why_not:
            report.notes.append(f"disk-full fault skipped: {why_not}")
        try:
            sandbox = start_sandbox(tmp)
            results_url = f"file://{results_dir}"
            if dsn is None:
                topology, db = sqlite_topology(tmp, sandbox, results_url, config.job_deadline_s)
            else:
                topology, db = (
                    postgres_topology(tmp, sandbox, dsn, results_url, config.job_deadline_s),
                    None,
                )
            topology.start()
            sandbox.client.put(
                "/fotor/webhook", json={"url": fotor_webhook_url(topology.public)}
            ).raise_for_status()
            api = Api(topology.bases, answers)
            secret = api.json("POST", "/v1/subscriptions", json={"url": subscriber.url})["secret"]
            sampler = Sampler(topology.processes)
            sampler.start()
            _load_phase(
                config, size, rng, sandbox, topology, db, api, subscriber, stop, report, why_not
            )
            report.checks.extend(
                _quiet_and_check(
                    config, size, sandbox, topology, api, subscriber, secret, answers, report
                )
            )
            sampler.stop()
            min_span = max(30.0, size.load_s / 2)
            report.checks.append(invariants.rss_flat(sampler.series.values(), min_span))
        finally:
            stop.set()
            if topology is not None:
                topology.stop()
            if sandbox is not None:
                sandbox.close()
            subscriber.close()
            left = tagged_pids(run_id)
            report.checks.append(invariants.nothing_left([describe(pid) for pid in left]))
            kill_pids(left)
    return report


class _no_tmpfs:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> str | None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _load_phase(
    config: SoakConfig,
    size: PhaseSize,
    rng: random.Random,
    sandbox: Sandbox,
    topology: Topology,
    db: Path | None,
    api: Api,
    subscriber: Subscriber,
    stop: threading.Event,
    report: PhaseReport,
    no_tmpfs: str | None,
) -> None:
    chaos = Chaos(stop, report.notes)
    load_s = size.load_s
    # Sandbox fault profiles in turn, one short window with result URLs on a private address.
    step = load_s / len(faults.PROFILES)
    for n, (name, profile) in enumerate(faults.PROFILES):
        chaos.at(n * step, f"faults {name}", functools.partial(sandbox.faults, **profile))
    foreign_at = rng.uniform(0.2, 0.7) * load_s
    chaos.at(
        foreign_at,
        "faults result_base_url=127.0.0.2",
        lambda: sandbox.client.put(
            "/faults", json={"result_base_url": f"http://127.0.0.2:{sandbox.port}/sandbox"}
        ).raise_for_status(),
    )
    chaos.at(
        foreign_at + 3,
        "faults result_base_url reset",
        lambda: sandbox.client.put("/faults", json={"result_base_url": ""}).raise_for_status(),
    )
    # SIGKILLs at random moments of the load, spread so that restarts do not overlap.
    roles = ("serve",) if topology.name == "sqlite" else ("web", "worker")
    slots = sorted(rng.uniform(0.08, 0.85) * load_s for _ in range(size.kills))
    kill_lock = threading.Lock()

    def kill(role: str) -> str:
        with kill_lock:
            k = topology.kill_one(rng, (role,))
            return f"SIGKILL {k.label}, restarted"

    # Roles in turn, so that a phase with web and worker processes kills both kinds.
    for n, at in enumerate(slots):
        chaos.at(at, "kill", functools.partial(kill, roles[n % len(roles)]))
    if db is not None:
        for _ in range(size.lock_holds):
            chaos.at(
                rng.uniform(0.1, 0.9) * load_s,
                "write lock",
                lambda: f"held {faults.hold_write_lock(db, size.lock_hold_s):.1f}s",
            )
    if size.disk_full_s and no_tmpfs is None:
        results_dir = topology.tmp / "results"
        chaos.at(
            rng.uniform(0.3, 0.7) * load_s,
            "disk full",
            lambda: f"filled {faults.fill_disk(results_dir, size.disk_full_s) >> 20} MB, held",
        )
    if size.outage_in_load_s:
        start = 0.35 * load_s
        chaos.at(start, "subscriber down (503)", subscriber.refuse)
        chaos.at(start + size.outage_in_load_s, "subscriber back", subscriber.come_back)

    operators = Operators(api, random.Random(rng.random()))
    op_thread = threading.Thread(
        target=operators.run,
        args=(stop, time.monotonic() + load_s + config.settle_s / 2),
        daemon=True,
    )
    op_thread.start()
    specs = job_specs(rng, size.jobs, f"soak-{size.name}-{config.seed}")
    note(f"[{size.name}] {len(specs)} jobs over {load_s:.0f}s")
    started = time.monotonic()
    load = run_load(api, specs, load_s, rng, stop)
    note(
        f"[{size.name}] load sent in {time.monotonic() - started:.0f}s; {len(load.refused)} refused"
    )
    # Let the last timed actions (a kill or outage set late) finish before settling.
    chaos.join(max(0.0, load_s + size.outage_in_load_s + 30 - (time.monotonic() - started)))
    sandbox.faults()
    report.checks.append(invariants.submits_answered(len(load.accepted), load.refused))

    def all_settled() -> bool:
        jobs = all_jobs(api)
        open_ = sum(1 for j in jobs.values() if j["state"] not in SETTLED)
        note(f"[{size.name}] {open_} of {len(jobs)} jobs not settled")
        return open_ == 0

    _wait(all_settled, config.settle_s, every_s=5.0)
    stop.set()
    op_thread.join(60)
    report.notes.append(
        "operators: " + ", ".join(f"{k} x{n}" for k, n in sorted(operators.actions.items()))
    )
    _wait(lambda: not deliveries_with_status(api, "pending"), 30.0)


def _quiet_and_check(
    config: SoakConfig,
    size: PhaseSize,
    sandbox: Sandbox,
    topology: Topology,
    api: Api,
    subscriber: Subscriber,
    secret: str,
    answers: AnswerLog,
    report: PhaseReport,
) -> list[Check]:
    checks: list[Check] = []
    if size.outage_in_quiet_s:
        # A few fresh jobs whose events meet a subscriber that is not listening at all:
        # the service has nothing to do but wait for the next retry.
        rng = random.Random(config.seed)
        ids = []
        for spec in job_specs(rng, 5, f"soak-quiet-{size.name}-{config.seed}"):
            ids.append(
                api.json("POST", "/v1/jobs", json=spec.body, headers={"Idempotency-Key": spec.key})[
                    "id"
                ]
            )
        _wait(
            lambda: all(api.json("GET", f"/v1/jobs/{i}")["state"] in SETTLED for i in ids),
            60.0,
            1.0,
        )
        subscriber.stop_listening()
        time.sleep(3)
        percent = _cpu_percent(topology, size.outage_in_quiet_s)
        subscriber.come_back()
        checks.append(
            invariants.idle_cpu(
                "CPU < 1% of a core while the subscriber is down", percent, size.outage_in_quiet_s
            )
        )
    events_done = _wait(
        lambda: len(subscriber.distinct_ids()) >= _count_events(api), config.events_s, 2.0
    )
    if not events_done:
        report.notes.append(f"events still missing after {config.events_s:.0f}s")
    time.sleep(2)
    percent = _cpu_percent(topology, size.quiet_s)
    checks.append(invariants.idle_cpu("CPU < 1% of a core when idle", percent, size.quiet_s))
    note(f"[{size.name}] reading back jobs, histories, deliveries, results")
    seen = observe(api, sandbox)
    checks += [
        invariants.settled(seen.jobs),
        invariants.uncertain_explained(seen.jobs, seen.histories, topology.kills, seen.sandbox),
        invariants.no_double_payment(seen.jobs, seen.histories, seen.sandbox),
        invariants.one_terminal_transition(seen.jobs, seen.histories),
        invariants.results_match(seen.jobs, seen.results),
        invariants.acked_callbacks_in_inbox(seen.deliveries.values(), seen.sandbox),
        invariants.inbox_settled(seen.deliveries.values()),
        invariants.events_delivered(seen.events, subscriber.snapshot(), _signature_check(secret)),
    ]
    checks.append(invariants.no_server_errors(answers.errors, answers.bad(), answers.total()))
    failures = sorted(
        {
            str((j.get("failure") or {}).get("reason"))
            for j in seen.jobs.values()
            if j["state"] == "failed"
        }
    )
    report.notes.append(
        f"kills: {len(topology.kills)} ({', '.join(k.label for k in topology.kills)})"
    )
    report.notes.append(f"failure reasons: {', '.join(failures)}")
    if subscriber.cut_off:
        report.notes.append(
            f"subscriber: {subscriber.cut_off} webhooks cut off mid-body by a kill, not counted"
        )
    if seen.truncated:
        report.notes.append(f"inbox listing truncated at 1,000 for {', '.join(seen.truncated)}")
    api.close()
    return checks


def _count_events(api: Api) -> int:
    from tests.soak.collect import all_events

    return len(all_events(api))


def _signature_check(secret: str) -> Callable[[bytes, dict[str, str]], None]:
    """The signature alone: ``Webhook.verify`` also refuses timestamps older than five
    minutes, and the soak reads back deliveries received longer ago than that."""
    webhook = Webhook(secret)

    def check(body: bytes, headers: dict[str, str]) -> None:
        at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
        expected = webhook.sign(headers["webhook-id"], at, body.decode()).split(",", 1)[1]
        given = [s.split(",", 1)[-1] for s in headers["webhook-signature"].split()]
        if expected not in given:
            raise ValueError("bad signature")

    return check
