"""``upscale``: run the service, the worker loops or the sandbox; submit and inspect jobs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from orchestrator.bootstrap_secrets import read_api_token
from orchestrator.logs import configure
from orchestrator.settings import load_settings

SETTLED = {"succeeded", "failed", "cancelled", "uncertain"}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    # The app is named by import string so that this layer does not import the
    # receiver; receiver/asgi.py builds it from the environment set here.
    local_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    os.environ["UPSCALE_LISTEN_URL"] = f"http://{local_host}:{args.port}"
    # What the listener binds: the sandbox is mounted only on a loopback host (see
    # orchestrator/sandbox/exposure.py).
    os.environ["UPSCALE_LISTEN_HOST"] = args.host
    # A web process of a multi-process deployment answers HTTP only; workers run the loops.
    os.environ["UPSCALE_RUN_LOOPS"] = "false" if args.web_only else "true"
    if args.allow_new_database:
        os.environ["UPSCALE_ALLOW_NEW_DATABASE"] = "1"
    from orchestrator.listener import server_options

    # No access log: it would write signed callback and input URLs, and it halves
    # the throughput of the callback path.
    uvicorn.run(
        "receiver.asgi:app",
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        lifespan="on",
        **server_options(load_settings()),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from orchestrator.runtime import build_runtime

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    runtime = build_runtime(settings, listen_url=settings.public_url or "http://127.0.0.1:8000")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from orchestrator.runtime import open_store
    from orchestrator.store.postgres import PostgresStore

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    store = open_store(settings, snapshot=lambda job: {})

    async def main() -> int:
        if isinstance(store, PostgresStore):
            return await store.migrate()
        await store.open()  # SQLite migrates when opened
        try:
            return await store.schema_version()
        finally:
            await store.close()

    print(f"database schema at version {asyncio.run(main())}")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.bootstrap_secrets import api_tokens
    from orchestrator.sandbox.app import standalone_app
    from orchestrator.sandbox.faults import Faults
    from orchestrator.sandbox.outbound import standalone_allow

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    # Its control routes take the service's API tokens (UPSCALE_API_TOKENS, or the
    # token generated into the data directory, as `upscale serve` does).
    tokens, _ = api_tokens(settings.api_tokens, settings.data_dir)
    app = standalone_app(
        faults=Faults.parse(settings.sandbox_faults),
        allow=standalone_allow(settings, host=args.host, port=args.port),
        control_tokens=tuple(token.reveal() for token in tokens),
    )
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None)
    return 0


# client commands -------------------------------------------------------------


def _client(args: argparse.Namespace) -> httpx.Client:
    settings = load_settings()
    token = os.environ.get("UPSCALE_API_TOKEN") or read_api_token(settings.data_dir)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=args.url, headers=headers, timeout=60.0, trust_env=False)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise SystemExit(f"error: {response.status_code} {message}")
    return response.json()


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --option wants KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def _submit_one(
    client: httpx.Client, args: argparse.Namespace, target: str, options: dict[str, Any]
) -> dict[str, Any]:
    if target.startswith(("http://", "https://")):
        body = {"provider": args.provider, "scale": args.scale, "image": target, "options": options}
        job: dict[str, Any] = _check(client.post("/v1/jobs", json=body))
        return job
    path = Path(target)
    if not path.is_file():
        raise SystemExit(f"error: no such file: {target}")
    with path.open("rb") as fh:
        job = _check(
            client.post(
                "/v1/jobs",
                data={
                    "provider": args.provider,
                    "scale": str(args.scale),
                    "options": json.dumps(options),
                },
                files={"image": (path.name, fh, "application/octet-stream")},
            )
        )
    return job


def _download(client: httpx.Client, job: dict[str, Any], out: Path) -> None:
    with client.stream("GET", f"/v1/jobs/{job['id']}/result") as stream:
        if stream.status_code != 200:
            raise SystemExit(f"error: result download failed: {stream.status_code}")
        with out.open("wb") as fh:
            for chunk in stream.iter_bytes():
                fh.write(chunk)


def _submit(args: argparse.Namespace) -> int:
    options = _parse_options(args.option or [])
    targets: list[str] = args.image
    if args.out and len(targets) > 1:
        raise SystemExit("error: --out takes one image; use --out-dir for several")
    with _client(args) as client:
        jobs = [_submit_one(client, args, t, options) for t in targets]
        if not args.wait:
            for job in jobs:
                _print_job(job, args.json)
            return 0
        if len(jobs) == 1:
            done = [_wait(client, jobs[0], timeout_s=args.timeout)]
        else:
            done = []
            for n, job in enumerate(jobs, start=1):
                done.append(_wait(client, job, timeout_s=args.timeout, quiet=True))
                _progress(n, len(jobs), "waiting")
        for target, job in zip(targets, done, strict=True):
            if job["state"] != "succeeded":
                continue
            out = None
            if args.out:
                out = Path(args.out)
            elif args.out_dir:
                ext = "png" if job["result"]["content_type"] == "image/png" else "jpg"
                out = Path(args.out_dir) / f"{Path(target).stem}.upscaled.{ext}"
                out.parent.mkdir(parents=True, exist_ok=True)
            if out is not None:
                _download(client, job, out)
                print(f"result written to {out}", file=sys.stderr)
    for job in done:
        _print_job(job, args.json)
    return 0 if all(j["state"] == "succeeded" for j in done) else 1


def _wait(
    client: httpx.Client, job: dict[str, Any], *, timeout_s: float, quiet: bool = False
) -> dict[str, Any]:
    start = time.monotonic()
    spinner = "|/-\\"
    tick = 0
    show = sys.stderr.isatty() and not quiet
    while job["state"] not in SETTLED:
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"error: job {job['id']} still {job['state']} after {timeout_s}s")
        if show:
            elapsed = time.monotonic() - start
            print(
                f"\r{spinner[tick % 4]} {job['id']} {job['state']:<10} {elapsed:5.1f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        tick += 1
        time.sleep(0.25)
        job = _check(client.get(f"/v1/jobs/{job['id']}"))
    if show:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    return job


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(job, indent=2))
        return
    rows = [
        ("id", job["id"]),
        ("provider", job["provider"]),
        ("state", job["state"]),
        ("provider job", job.get("provider_job_id") or "-"),
        ("created", job["created_at"]),
        ("updated", job["updated_at"]),
    ]
    if job.get("failure"):
        rows.append(("failure", f"{job['failure']['reason']}: {job['failure']['message']}"))
    if job.get("result"):
        r = job["result"]
        rows.append(
            (
                "result",
                f"{r['width']}x{r['height']} {r['content_type']} "
                f"{r['bytes']} bytes sha256 {r['sha256'][:16]}…",
            )
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _jobs_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.provider:
        params["provider"] = args.provider
    with _client(args) as client:
        page = _check(client.get("/v1/jobs", params=params))
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    print(f"{'ID':<32} {'PROVIDER':<10} {'STATE':<11} {'CREATED':<27} REASON")
    for job in page["jobs"]:
        reason = job["failure"]["reason"] if job.get("failure") else ""
        print(
            f"{job['id']:<32} {job['provider']:<10} {job['state']:<11} "
            f"{job['created_at']:<27} {reason}"
        )
    return 0


def _jobs_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _check(client.get(f"/v1/jobs/{args.job_id}"))
    _print_job(job, args.json)
    return 0


def _callback_url(args: argparse.Namespace) -> int:
    from orchestrator.bootstrap_secrets import signing_keys
    from orchestrator.clock import SystemClock
    from orchestrator.core.urls import account_callback_url
    from orchestrator.providers.registry import ACCOUNT_WEBHOOK
    from orchestrator.signing import CallbackSigner

    if args.provider not in ACCOUNT_WEBHOOK:
        names = ", ".join(sorted(ACCOUNT_WEBHOOK))
        raise SystemExit(
            f"error: {args.provider} gets a webhook URL per job; only {names} needs one "
            "registered for the account"
        )
    settings = load_settings()
    if not settings.public_url:
        print(
            "warning: UPSCALE_PUBLIC_URL is not set; the URL below only works on this machine",
            file=sys.stderr,
        )
    signer = CallbackSigner(signing_keys(settings.secret_keys, settings.data_dir), SystemClock())
    base = settings.public_base("http://127.0.0.1:8000")
    print(account_callback_url(base, signer, args.provider))
    return 0


def _providers_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get("/v1/providers"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'PROVIDER':<10} {'MODE':<8} CALLBACKS")
    for p in data["providers"]:
        print(f"{p['name']:<10} {p['mode']:<8} {p['callbacks']}")
    return 0


def _providers_balance(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get(f"/v1/providers/{args.provider}/balance"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        print(f"{key:<12} {value}")
    return 0


def _events_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.after:
        params["after"] = args.after
    if args.type:
        params["type"] = args.type
    with _client(args) as client:
        page = _check(client.get("/v1/events", params=params))
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    print(f"{'EVENT':<22} {'TYPE':<15} {'TIME':<28} JOB")
    for event in page["events"]:
        print(
            f"{event['id']:<22} {event['type']:<15} {event['timestamp']:<28} {event['data']['id']}"
        )
    if page["next"]:
        print(f"next cursor: {page['next']}", file=sys.stderr)
    return 0


def _events_redeliver(args: argparse.Namespace) -> int:
    body = {"subscription_id": args.subscription} if args.subscription else {}
    with _client(args) as client:
        answer = _check(client.post(f"/v1/events/{args.event_id}/redeliver", json=body))
    print(f"queued {answer['queued']} deliveries of {answer['event_id']}")
    return 0


def _subscriptions_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.target}
    if args.types:
        body["types"] = [t for t in args.types.split(",") if t]
    with _client(args) as client:
        sub = _check(client.post("/v1/subscriptions", json=body))
    if args.json:
        print(json.dumps(sub, indent=2))
    else:
        print(f"subscription {sub['id']} -> {sub['url']}")
        print(f"signing secret (shown once): {sub['secret']}")
    return 0


def _subscriptions_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get("/v1/subscriptions"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'ID':<32} {'STATE':<9} {'TYPES':<30} URL")
    for sub in data["subscriptions"]:
        state = "disabled" if sub["disabled"] else "active"
        types = ",".join(sub["types"] or ["*"])
        print(f"{sub['id']:<32} {state:<9} {types:<30} {sub['url']}")
    return 0


def _subscriptions_remove(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.delete(f"/v1/subscriptions/{args.subscription_id}")
        if response.status_code != 204:
            _check(response)
    print(f"removed {args.subscription_id}")
    return 0


def _subscriptions_rotate(args: argparse.Namespace) -> int:
    body = {"grace_s": args.grace_s} if args.grace_s is not None else {}
    with _client(args) as client:
        sub = _check(client.post(f"/v1/subscriptions/{args.subscription_id}/secret", json=body))
    print(f"new signing secret: {sub['secret']}")
    return 0


def _subscriptions_deliveries(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get(f"/v1/subscriptions/{args.subscription_id}/deliveries"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'EVENT':<22} {'TYPE':<15} {'STATUS':<10} {'TRIES':<5} LAST ERROR")
    for d in data["deliveries"]:
        last = d["attempts"][-1] if d["attempts"] else None
        error = (last or {}).get("error") or ""
        print(
            f"{d['event_id']:<22} {d['event_type']:<15} {d['status']:<10} "
            f"{len(d['attempts']):<5} {error}"
        )
    return 0


def _progress(done: int, total: int, label: str) -> None:
    """A progress bar on stderr for long operations (only on a terminal)."""
    if not sys.stderr.isatty() or total <= 1:
        return
    width = 30
    filled = width * done // total
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\r{label} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def _deliveries_list(args: argparse.Namespace) -> int:
    params = {
        k: v
        for k, v in (
            ("status", args.status),
            ("provider", args.provider),
            ("since", args.since),
            ("limit", args.limit),
        )
        if v
    }
    with _client(args) as client:
        data = _check(client.get("/v1/deliveries", params=params))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'DELIVERY':<32} {'PROVIDER':<10} {'STATUS':<10} {'SOURCE':<9} {'JOB':<32} ERROR")
    for d in data["deliveries"]:
        print(
            f"{d['id']:<32} {d['provider']:<10} {d['status']:<10} {d['source']:<9} "
            f"{d['job_id'] or '-':<32} {d['error'] or ''}"
        )
    return 0


def _deliveries_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get(f"/v1/deliveries/{args.delivery_id}"))
    print(json.dumps(data, indent=2))
    return 0


def _deliveries_replay(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.delivery_id:
            result = _check(client.post(f"/v1/deliveries/{args.delivery_id}/replay"))
            print(f"{result['delivery_id']}: {result['message']}")
            return 0
        if not args.status:
            raise SystemExit("error: give a delivery id, or --status (with --since)")
        listing = _check(
            client.get(
                "/v1/deliveries",
                params={
                    k: v
                    for k, v in (("status", args.status), ("since", args.since), ("limit", 1000))
                    if v
                },
            )
        )
        todo = list(reversed(listing["deliveries"]))
        for n, d in enumerate(todo, start=1):
            result = _check(client.post(f"/v1/deliveries/{d['id']}/replay"))
            _progress(n, len(todo), "replaying")
            if not sys.stderr.isatty():
                print(f"{result['delivery_id']}: {result['message']}")
        print(f"replayed {len(todo)} deliveries")
    return 0


def _inject(args: argparse.Namespace) -> int:
    body = Path(args.file).read_bytes()
    params = {"job_id": args.job} if args.job else {}
    with _client(args) as client:
        answer = _check(
            client.post(
                f"/v1/inject/{args.provider}",
                content=body,
                params=params,
                headers={"content-type": "application/json"},
            )
        )
    print(f"injected as {answer['delivery']}: {answer['status']}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.job_id:
            params = {"dry_run": "1"} if args.dry_run else {}
            results = [_check(client.post(f"/v1/jobs/{args.job_id}/reconcile", params=params))]
        elif args.stuck or args.since or args.state:
            body: dict[str, Any] = {"dry_run": args.dry_run}
            if args.stuck:
                body["stuck"] = True
            body.update({k: v for k, v in (("since", args.since), ("state", args.state)) if v})
            results = _reconcile_stream(client, body)
        else:
            raise SystemExit("error: give a job id, --stuck, --since or --state")
    verb = "would go" if args.dry_run else "went"
    for r in results:
        change = f"{verb} {r['before']} -> {r['after']}" if r["after"] else "unchanged"
        print(f"{r['job_id']}: {change} ({r['note']})")
    return 0


def _reconcile_stream(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Queue a bulk reconcile and follow its progress until every job has its result."""
    results: list[dict[str, Any]] = []
    total = 0
    # The service answers at once; results come as the provider's status budget allows.
    with client.stream("POST", "/v1/reconcile", json=body, timeout=None) as response:
        if response.status_code >= 400:
            response.read()
            _check(response)
        for line in response.iter_lines():
            if not line.strip():
                continue
            item = json.loads(line)
            if "queued" in item:
                total = len(item["queued"])
            elif "result" in item:
                results.append(item["result"])
                _progress(len(results), total, "reconciling")
    return results


def _jobs_stuck(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _check(client.get("/v1/stuck"))
    for job in data["jobs"]:
        print(f"{job['id']}  {job['provider']:<10} submitted at {job['created_at']}")
    print(f"{len(data['jobs'])} stuck (older than {data['stuck_after_s']:.0f}s)", file=sys.stderr)
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _check(client.delete(f"/v1/jobs/{args.job_id}"))
    _print_job(job, args.json)
    return 0


def _jobs_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _check(client.get(f"/v1/jobs/{args.job_id}"))
        confirm = False
        if job["state"] == "uncertain":
            if not args.yes:
                raise SystemExit(
                    "error: this job is uncertain: the provider may still have it and bill "
                    "it. Check the provider's dashboard, then run again with --yes."
                )
            confirm = True
        new = _check(
            client.post(f"/v1/jobs/{args.job_id}/retry", json={"confirm_uncertain": confirm})
        )
    _print_job(new, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="receiver and orchestrator loops in one process")
    p.add_argument("--host", default=os.environ.get("UPSCALE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument(
        "--web-only",
        action="store_true",
        help="answer HTTP only and leave the loops to `upscale worker` processes (PostgreSQL)",
    )
    p.add_argument(
        "--allow-new-database",
        action="store_true",
        help="start on a new empty SQLite database even where the data directory says "
        "there was one (UPSCALE_ALLOW_NEW_DATABASE=1)",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser("worker", help="the orchestrator loops only")
    p.set_defaults(func=_worker)

    db = sub.add_parser("db", help="the database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = db_sub.add_parser("migrate", help="apply pending migrations (run before starting)")
    p.set_defaults(func=_db_migrate)

    p = sub.add_parser("sandbox", help="all sandbox providers in one standalone server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.set_defaults(func=_sandbox)

    url = os.environ.get("UPSCALE_URL", "http://127.0.0.1:8000")

    p = sub.add_parser("submit", help="submit an image file or URL")
    p.add_argument("image", nargs="+", help="file paths or http(s) URLs")
    p.add_argument("--provider", required=True)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--option", action="append", metavar="KEY=VALUE")
    p.add_argument("--wait", action="store_true", help="wait until the job settles")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    p.add_argument("--out", help="write the result image here (with --wait, one image)")
    p.add_argument("--out-dir", help="write each result here as NAME.upscaled.EXT (with --wait)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_submit)

    p = sub.add_parser("callback-url", help="print the account webhook URL to register")
    p.add_argument("provider")
    p.set_defaults(func=_callback_url)

    providers = sub.add_parser("providers", help="providers and their accounts")
    providers_sub = providers.add_subparsers(dest="providers_command", required=True)
    p = providers_sub.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_providers_list)
    p = providers_sub.add_parser("balance")
    p.add_argument("provider")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_providers_balance)

    events = sub.add_parser("events", help="the event feed")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    p = events_sub.add_parser("list")
    p.add_argument("--after", help="an event id (cursor)")
    p.add_argument("--type", help="event types, comma-separated")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_events_list)
    p = events_sub.add_parser("redeliver")
    p.add_argument("event_id")
    p.add_argument("--subscription", help="only to this subscription")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_events_redeliver)

    subs = sub.add_parser("subscriptions", help="outbound webhook subscriptions")
    subs_sub = subs.add_subparsers(dest="subscriptions_command", required=True)
    p = subs_sub.add_parser("add")
    p.add_argument("target", metavar="URL")
    p.add_argument("--types", help="event types, comma-separated (default: all)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_subscriptions_add)
    p = subs_sub.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_subscriptions_list)
    p = subs_sub.add_parser("remove")
    p.add_argument("subscription_id")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_subscriptions_remove)
    p = subs_sub.add_parser("rotate")
    p.add_argument("subscription_id")
    p.add_argument("--grace-s", type=float, help="seconds the old secret keeps signing")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_subscriptions_rotate)
    p = subs_sub.add_parser("deliveries")
    p.add_argument("subscription_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_subscriptions_deliveries)

    deliveries = sub.add_parser("deliveries", help="the callback inbox")
    deliveries_sub = deliveries.add_subparsers(dest="deliveries_command", required=True)
    p = deliveries_sub.add_parser("list")
    p.add_argument("--status", choices=["pending", "applied", "duplicate", "unmatched", "dead"])
    p.add_argument("--provider")
    p.add_argument("--since", help="e.g. 1h, 30m, 2d")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_deliveries_list)
    p = deliveries_sub.add_parser("show")
    p.add_argument("delivery_id")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_deliveries_show)
    p = deliveries_sub.add_parser("replay")
    p.add_argument("delivery_id", nargs="?")
    p.add_argument("--status", choices=["pending", "unmatched", "dead", "duplicate"])
    p.add_argument("--since", help="e.g. 24h")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_deliveries_replay)

    p = sub.add_parser("replay", help="inject a callback captured elsewhere")
    p.add_argument("--provider", required=True)
    p.add_argument("--file", required=True, help="the callback body (JSON)")
    p.add_argument("--job", help="the job it belongs to (for per-job callbacks)")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_inject)

    p = sub.add_parser("reconcile", help="ask providers about jobs now and apply the answer")
    p.add_argument("job_id", nargs="?")
    p.add_argument("--stuck", action="store_true")
    p.add_argument("--since", help="jobs created in the last e.g. 2h")
    p.add_argument("--state")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_reconcile)

    jobs = sub.add_parser("jobs", help="list and inspect jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    p = jobs_sub.add_parser("list")
    p.add_argument("--state")
    p.add_argument("--provider")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_list)
    p = jobs_sub.add_parser("stuck")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_stuck)
    p = jobs_sub.add_parser("cancel")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_cancel)
    p = jobs_sub.add_parser("retry")
    p.add_argument("job_id")
    p.add_argument("--yes", action="store_true", help="confirm retrying an uncertain job")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_retry)
    p = jobs_sub.add_parser("show")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the service at {args.url}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
