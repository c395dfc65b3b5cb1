"""``upscale submit``: submit image files or URLs, optionally wait and download.

``--operation replace`` sends each image file with ``--mask`` (both as file
parts) and ``--prompt``; a replace takes files only, and no ``--scale``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_job, progress

SETTLED = {"succeeded", "failed", "cancelled", "uncertain"}


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


def _check_operation(args: argparse.Namespace) -> None:
    """Refuse flags that do not go with the operation, before anything is sent."""
    if args.operation == "replace":
        if args.scale is not None:
            raise SystemExit("error: --scale is for upscale; a replace keeps the image's size")
        if not args.mask or not args.prompt or not args.prompt.strip():
            raise SystemExit("error: --operation replace needs --mask FILE and --prompt TEXT")
        if not Path(args.mask).is_file():
            raise SystemExit(f"error: no such file: {args.mask}")
        urls = [t for t in args.image if t.startswith(("http://", "https://"))]
        if urls:
            raise SystemExit("error: a replace takes image files, not URLs")
    elif args.mask or args.prompt is not None:
        raise SystemExit("error: --mask and --prompt go with --operation replace")


def _submit_replace(
    client: httpx.Client, args: argparse.Namespace, target: str, options: dict[str, Any]
) -> dict[str, Any]:
    path, mask = Path(target), Path(args.mask)
    if not path.is_file():
        raise SystemExit(f"error: no such file: {target}")
    with path.open("rb") as image_fh, mask.open("rb") as mask_fh:
        job: dict[str, Any] = check(
            client.post(
                "/v1/jobs",
                data={
                    **route_fields(args, form=True),
                    "operation": "replace",
                    "prompt": args.prompt,
                    "options": json.dumps(options),
                },
                files={
                    "image": (path.name, image_fh, "application/octet-stream"),
                    "mask": (mask.name, mask_fh, "application/octet-stream"),
                },
            )
        )
    return job


def _submit_one(
    client: httpx.Client, args: argparse.Namespace, target: str, options: dict[str, Any]
) -> dict[str, Any]:
    if args.operation == "replace":
        return _submit_replace(client, args, target, options)
    scale = 2.0 if args.scale is None else args.scale
    if target.startswith(("http://", "https://")):
        body = {**route_fields(args), "scale": scale, "image": target, "options": options}
        job: dict[str, Any] = check(client.post("/v1/jobs", json=body))
        return job
    path = Path(target)
    if not path.is_file():
        raise SystemExit(f"error: no such file: {target}")
    with path.open("rb") as fh:
        job = check(
            client.post(
                "/v1/jobs",
                data={
                    **route_fields(args, form=True),
                    "scale": str(scale),
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


def route_fields(args: argparse.Namespace, *, form: bool = False) -> dict[str, Any]:
    """The request's provider, providers (``--provider a,b,c``) or named ``--route``,
    and its ``max_cost``, as a JSON body (or form fields) takes them."""
    out: dict[str, Any] = {}
    if args.route:
        out["route"] = args.route
    else:
        names = [n.strip() for n in args.provider.split(",") if n.strip()]
        if len(names) == 1:
            out["provider"] = names[0]
        else:
            out["providers"] = ",".join(names) if form else names
    if args.max_cost is not None:
        out["max_cost"] = str(args.max_cost) if form else args.max_cost
    return out


def routed(args: argparse.Namespace) -> bool:
    return bool(args.route) or "," in (args.provider or "")


def per_provider(options: dict[str, Any]) -> dict[str, Any]:
    """A route's options: ``--option fotor.key=value`` becomes ``{"fotor": {"key": ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        provider, sep, name = key.partition(".")
        if not sep or not name:
            raise SystemExit(
                f"error: with a route, options name their provider: --option PROVIDER.{key}=..."
            )
        out.setdefault(provider, {})[name] = value
    return out


def _submit(args: argparse.Namespace) -> int:
    _check_operation(args)
    if bool(args.route) == bool(args.provider):
        raise SystemExit("error: give --provider (one, or several as a,b,c) or --route")
    options = _parse_options(args.option or [])
    if routed(args):
        options = per_provider(options)
    targets: list[str] = args.image
    if args.out and len(targets) > 1:
        raise SystemExit("error: --out takes one image; use --out-dir for several")
    with connect(args.url) as client:
        jobs = [_submit_one(client, args, t, options) for t in targets]
        if not args.wait:
            for job in jobs:
                print_job(job, args.json)
            return 0
        if len(jobs) == 1:
            done = [_wait(client, jobs[0], timeout_s=args.timeout)]
        else:
            done = []
            for n, job in enumerate(jobs, start=1):
                done.append(_wait(client, job, timeout_s=args.timeout, quiet=True))
                progress(n, len(jobs), "waiting")
        for target, job in zip(targets, done, strict=True):
            if job["state"] != "succeeded":
                continue
            out = None
            if args.out:
                out = Path(args.out)
            elif args.out_dir:
                ext = "png" if job["result"]["content_type"] == "image/png" else "jpg"
                done_as = "replaced" if args.operation == "replace" else "upscaled"
                out = Path(args.out_dir) / f"{Path(target).stem}.{done_as}.{ext}"
                out.parent.mkdir(parents=True, exist_ok=True)
            if out is not None:
                _download(client, job, out)
                print(f"result written to {out}", file=sys.stderr)
    for job in done:
        print_job(job, args.json)
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
        job = check(client.get(f"/v1/jobs/{job['id']}"))
    if show:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    return job


def register(commands: Commands, flags: Flags) -> None:
    p = commands.add_parser(
        "submit", parents=[flags.json, flags.url], help="submit an image file or URL"
    )
    p.add_argument("image", nargs="+", help="file paths or http(s) URLs")
    p.add_argument(
        "--provider", help="a provider, or several to try in order: upsampler,fotor,local"
    )
    p.add_argument("--route", help="a route named in the service's UPSCALE_ROUTES")
    p.add_argument("--max-cost", type=float, help="credits the job may spend in all")
    p.add_argument("--scale", type=float, help="upscale factor (default 2; not for replace)")
    p.add_argument(
        "--operation",
        choices=("upscale", "replace"),
        default="upscale",
        help="upscale (default), or replace the mask's white area from --prompt",
    )
    p.add_argument("--mask", help="replace: the mask image file, the image's size")
    p.add_argument("--prompt", help="replace: what to paint in the masked area")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a provider option; with a route, PROVIDER.KEY=VALUE",
    )
    p.add_argument("--wait", action="store_true", help="wait until the job settles")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    p.add_argument("--out", help="write the result image here (with --wait, one image)")
    p.add_argument(
        "--out-dir",
        help="write each result here as NAME.upscaled.EXT (NAME.replaced.EXT) (with --wait)",
    )
    p.set_defaults(func=_submit)
