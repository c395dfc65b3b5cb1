"""Several web and worker processes on one PostgreSQL database, a worker killed midway."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e.harness import (
    Proc,
    Sandbox,
    Service,
    free_port,
    service_env,
)
from tests.e2e.test_events_e2e import Consumer
from tests.factories import make_png

pytestmark = pytest.mark.e2e

JOBS = 120
STATUS_PER_MIN = 60
# Submits one worker makes at once: a SIGKILL can cut off at most this many.
WORKER_CONCURRENCY = 8
# What the Upsampler sandbox says when it could not download a job's input.
INPUT_FETCH_FAILED = "Failed to download input image"


def _env(tmp_path: Path, sandbox: Sandbox, dsn: str, public: str) -> dict[str, str]:
    return service_env(
        tmp_path / "shared",  # the data directory is shared, as a volume would be
        sandbox,
        UPSCALE_DATABASE_URL=dsn,
        UPSCALE_PUBLIC_URL=public,
        UPSCALE_UPSAMPLER_STATUS_PER_MIN=str(STATUS_PER_MIN),
        UPSCALE_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        UPSCALE_WEBHOOK_RETRY_SCHEDULE_S=",".join(["1"] * 30),
        UPSCALE_SYNC_TIMEOUT_S="5",
        UPSCALE_LEASE_S="8",
        UPSCALE_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
    )


def _check_outcome(
    jobs: dict[str, dict[str, Any]],
    web: Service,
    sandbox: Sandbox,
    consumer: Consumer,
    secret: str,
) -> None:
    """What both scenarios must show: every job settled once, nothing paid twice,
    the status budget kept, every event delivered once."""
    states = [j["state"] for j in jobs.values()]
    # The provider fetches a job's input from the service: one whose fetch fell in the
    # moment its process was down fails as the provider reports it (the provider
    # refunds it). Nothing else may fail.
    failures = {i: j.get("failure") for i, j in jobs.items() if j["state"] == "failed"}
    unreachable_input = {
        i: f for i, f in failures.items() if f and f["message"].startswith(INPUT_FETCH_FAILED)
    }
    assert failures == unreachable_input, failures
    assert len(unreachable_input) <= WORKER_CONCURRENCY, failures
    assert set(states) <= {"succeeded", "uncertain", "failed"}, states
    # A job ends uncertain only when the kill cut off its submit call (it may have been
    # billed, so it is not submitted again): the killed process's submits in flight.
    uncertain = [job_id for job_id, j in jobs.items() if j["state"] == "uncertain"]
    assert len(uncertain) <= WORKER_CONCURRENCY, uncertain
    for job_id in uncertain:
        last = web.history(job_id)[-1]
        assert (last["from"], last["to"], last["cause"]) == ("submitting", "uncertain", "recovery")
    # Exactly one stored result per succeeded job.
    stems = [p.stem for p in web.result_files()]
    assert len(stems) == len(set(stems)) == states.count("succeeded")
    stats = sandbox.stats()
    assert stats["jobs_created"] <= JOBS  # no provider job submitted twice
    provider_ids = [j["provider_job_id"] for j in jobs.values() if j["provider_job_id"]]
    assert len(provider_ids) == len(set(provider_ids))
    assert stats.get("status_calls_max_per_min", 0) <= STATUS_PER_MIN
    for job_id in jobs:
        history = web.history(job_id)
        assert sum(1 for h in history if h["to"] == "succeeded") <= 1

    # Every event, once per subscription, verified with the subscription's secret.
    events: list[str] = []
    cursor = ""
    while True:
        page = web.client.get("/v1/events", params={"after": cursor, "limit": 1000}).json()
        if not page["events"]:
            break
        events += [e["id"] for e in page["events"]]
        cursor = page["next"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(
        {h["webhook-id"] for h, _ in consumer.received}
    ) < len(events):
        time.sleep(0.2)
    wh = Webhook(secret)
    bodies: dict[str, bytes] = {}
    for headers, body in consumer.received:
        wh.verify(body, headers)
        # A delivery in flight when a worker is killed is sent again (at least
        # once, as Standard Webhooks has it): a repeat is the same event, same id.
        assert bodies.setdefault(headers["webhook-id"], body) == body
    assert sorted(bodies) == sorted(events)


@pytest.fixture
def consumer() -> Iterator[Consumer]:
    c = Consumer()
    c.status = 200
    try:
        yield c
    finally:
        c.close()


@pytest.mark.timeout(420)
def test_two_web_three_workers_one_killed(
    tmp_path: Path, sandbox: Sandbox, postgres_dsn: str, consumer: Consumer
) -> None:
    web_ports = [free_port(), free_port()]
    public = f"http://127.0.0.1:{web_ports[0]}"
    env = _env(tmp_path, sandbox, postgres_dsn, public)
    sandbox.faults(drop_callback=0.2, duplicate_callback=0.2, delay_callback_s=0.3)
    migrate = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    procs: list[Proc] = []
    webs: list[Service] = []
    try:
        for port in web_ports:
            proc = Proc(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--web-only",
                ],
                env,
                tmp_path / f"web-{port}.log",
                f"http://127.0.0.1:{port}/healthz",
            )
            proc.start()
            procs.append(proc)
            webs.append(Service(port, tmp_path / "shared", proc))
        workers = []
        for n in range(3):
            proc = Proc(
                [sys.executable, "-m", "orchestrator.cli", "worker"],
                env,
                tmp_path / f"worker-{n}.log",
                f"{public}/healthz",
            )
            proc.start()
            procs.append(proc)
            workers.append(proc)
        sub = webs[1].client.post("/v1/subscriptions", json={"url": consumer.url}).json()

        ids: list[str] = []
        for i in range(JOBS):
            ids.append(webs[i % 2].submit(make_png(8 + i % 5, 8))["id"])
            if i == JOBS // 2:
                workers[0].kill()
        jobs = webs[0].wait(ids, timeout_s=240)

        _check_outcome(jobs, webs[1], sandbox, consumer, sub["secret"])
    finally:
        for web in webs:
            web.client.close()
        for proc in procs:
            proc.stop()


@pytest.mark.timeout(420)
def test_the_same_scenario_on_sqlite_with_one_process(
    tmp_path: Path, sandbox: Sandbox, consumer: Consumer
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, sandbox, f"sqlite:///{tmp_path / 'shared' / 'upscale.db'}", public)
    sandbox.faults(drop_callback=0.2, duplicate_callback=0.2, delay_callback_s=0.3)

    def start() -> Service:
        proc = Proc(
            [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(port)],
            env,
            tmp_path / "serve.log",
            f"{public}/healthz",
        )
        proc.start()
        return Service(port, tmp_path / "shared", proc)

    svc = start()
    try:
        sub = svc.client.post("/v1/subscriptions", json={"url": consumer.url}).json()
        ids: list[str] = []
        for i in range(JOBS):
            ids.append(svc.submit(make_png(8 + i % 5, 8))["id"])
            if i == JOBS // 2:  # the one process is the worker: kill it, start it again
                svc.proc.kill()
                svc.client.close()
                svc = start()
        jobs = svc.wait(ids, timeout_s=240)
        _check_outcome(jobs, svc, sandbox, consumer, sub["secret"])
    finally:
        svc.close()


def _at(stamp: str) -> float:
    """A timestamp of the API, in seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(180)
def test_a_web_process_and_a_worker_on_sqlite_react_within_a_second(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, sandbox, f"sqlite:///{tmp_path / 'shared' / 'upscale.db'}", public)
    # Polling would settle the job after its grace period anyway: make that far
    # off, so only the worker noticing the web process's writes can be quick.
    env["UPSCALE_POLL_GRACE_S"] = "60"
    web_proc = Proc(
        [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(port), "--web-only"],
        env,
        tmp_path / "web.log",
        f"{public}/healthz",
    )
    worker = Proc(
        [sys.executable, "-m", "orchestrator.cli", "worker"],
        env,
        tmp_path / "worker.log",
        f"{public}/healthz",
    )
    web_proc.start()
    web = Service(port, tmp_path / "shared", web_proc)
    try:
        worker.start()
        assert worker.popen is not None and web_proc.popen is not None
        # The worker is up once it has settled a first job (its health is the web's).
        first = web.submit(make_png(8, 8))
        web.wait([first["id"]], timeout_s=90)
        for n in range(3):
            time.sleep(2.0)  # idle: the worker is in its longest wait
            started = time.monotonic()
            job = web.submit(make_png(9 + n, 8))
            # Created by the web process, submitted by the worker, called back by
            # the sandbox to the web process, applied and fetched by the worker.
            done = web.wait([job["id"]], timeout_s=90)[job["id"]]
            took = time.monotonic() - started
            assert done["state"] == "succeeded", done
            assert took < 3.0, took
            history = web.history(job["id"])
            causes = [h["cause"] for h in history]
            assert any(c.startswith("callback:") for c in causes), causes
            # Each hand-over between the processes within a second, by the service's
            # own clock: the worker took the web's new job, and applied the callback
            # the web acknowledged (stored apart, then filed by the worker).
            created = _at(history[0]["at"])
            submitting = next(_at(h["at"]) for h in history if h["to"] == "submitting")
            assert submitting - created < 1.0, history
            applied = next(h for h in history if h["cause"].startswith("callback:"))
            delivery_id = applied["cause"].partition(":")[2]
            delivery = web.client.get(f"/v1/deliveries/{delivery_id}").json()
            assert _at(applied["at"]) - _at(delivery["received_at"]) < 1.0, (delivery, history)

        time.sleep(2.0)
        pids = (worker.popen.pid, web_proc.popen.pid)
        before = [_cpu_s(pid) for pid in pids]
        time.sleep(5.0)
        idle = [(_cpu_s(pid) - b) / 5.0 for pid, b in zip(pids, before, strict=True)]
        assert max(idle) < 0.01, idle  # under 1% of a core each while idle
    finally:
        web.client.close()
        worker.stop()
        web_proc.stop()
