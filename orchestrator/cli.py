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
    # No access log: it would write signed callback and input URLs, and it halves
    # the throughput of the callback path.
    uvicorn.run(
        "receiver.asgi:app",
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        lifespan="on",
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


def _sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.sandbox.app import standalone_app
    from orchestrator.sandbox.faults import Faults

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    app = standalone_app(faults=Faults.parse(settings.sandbox_faults))
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


def _submit(args: argparse.Namespace) -> int:
    options = _parse_options(args.option or [])
    with _client(args) as client:
        target: str = args.image
        if target.startswith(("http://", "https://")):
            body = {
                "provider": args.provider,
                "scale": args.scale,
                "image": target,
                "options": options,
            }
            response = client.post("/v1/jobs", json=body)
        else:
            path = Path(target)
            if not path.is_file():
                raise SystemExit(f"error: no such file: {target}")
            with path.open("rb") as fh:
                response = client.post(
                    "/v1/jobs",
                    data={
                        "provider": args.provider,
                        "scale": str(args.scale),
                        "options": json.dumps(options),
                    },
                    files={"image": (path.name, fh, "application/octet-stream")},
                )
        job = _check(response)
        if not args.wait:
            _print_job(job, args.json)
            return 0
        job = _wait(client, job, timeout_s=args.timeout)
        if args.out and job["state"] == "succeeded":
            with client.stream("GET", f"/v1/jobs/{job['id']}/result") as stream:
                if stream.status_code != 200:
                    raise SystemExit(f"error: result download failed: {stream.status_code}")
                with open(args.out, "wb") as fh:
                    for chunk in stream.iter_bytes():
                        fh.write(chunk)
        _print_job(job, args.json)
        if args.out and job["state"] == "succeeded":
            print(f"result written to {args.out}", file=sys.stderr)
        return 0 if job["state"] == "succeeded" else 1


def _wait(client: httpx.Client, job: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
    start = time.monotonic()
    spinner = "|/-\\"
    tick = 0
    show = sys.stderr.isatty()
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
    print(f"{base}/callbacks/{args.provider}/{signer.for_account(args.provider)}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="receiver and orchestrator loops in one process")
    p.add_argument("--host", default=os.environ.get("UPSCALE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.set_defaults(func=_serve)

    p = sub.add_parser("worker", help="the orchestrator loops only")
    p.set_defaults(func=_worker)

    p = sub.add_parser("sandbox", help="all sandbox providers in one standalone server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.set_defaults(func=_sandbox)

    url = os.environ.get("UPSCALE_URL", "http://127.0.0.1:8000")

    p = sub.add_parser("submit", help="submit an image file or URL")
    p.add_argument("image", help="a file path or an http(s) URL")
    p.add_argument("--provider", required=True)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--option", action="append", metavar="KEY=VALUE")
    p.add_argument("--wait", action="store_true", help="wait until the job settles")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    p.add_argument("--out", help="write the result image here (with --wait)")
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

    jobs = sub.add_parser("jobs", help="list and inspect jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    p = jobs_sub.add_parser("list")
    p.add_argument("--state")
    p.add_argument("--provider")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=url)
    p.set_defaults(func=_jobs_list)
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
