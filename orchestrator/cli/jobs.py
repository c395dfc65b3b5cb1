"""``upscale jobs``: list, show, cancel and retry jobs; the stuck ones."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_job, print_json


def _jobs_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.provider:
        params["provider"] = args.provider
    if args.operation:
        params["operation"] = args.operation
    with connect(args.url) as client:
        page = check(client.get("/v1/jobs", params=params))
    if args.json:
        print_json(page)
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
    with connect(args.url) as client:
        job = check(client.get(f"/v1/jobs/{args.job_id}"))
    print_job(job, args.json)
    return 0


def _jobs_stuck(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        data = check(client.get("/v1/stuck"))
    for job in data["jobs"]:
        print(f"{job['id']}  {job['provider']:<10} submitted at {job['created_at']}")
    print(f"{len(data['jobs'])} stuck (older than {data['stuck_after_s']:.0f}s)", file=sys.stderr)
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        job = check(client.delete(f"/v1/jobs/{args.job_id}"))
    print_job(job, args.json)
    return 0


def _jobs_retry(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        job = check(client.get(f"/v1/jobs/{args.job_id}"))
        confirm = False
        if job["state"] == "uncertain":
            if not args.yes:
                raise SystemExit(
                    "error: this job is uncertain: the provider may still have it and bill "
                    "it. Check the provider's dashboard, then run again with --yes."
                )
            confirm = True
        new = check(
            client.post(f"/v1/jobs/{args.job_id}/retry", json={"confirm_uncertain": confirm})
        )
    print_job(new, args.json)
    return 0


def register(commands: Commands, flags: Flags) -> None:
    both = [flags.json, flags.url]
    jobs = commands.add_parser("jobs", help="list and inspect jobs")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    p = jobs_commands.add_parser("list", parents=both)
    p.add_argument("--state")
    p.add_argument("--provider")
    p.add_argument("--operation", choices=("upscale", "replace"), help="only jobs asking this")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_jobs_list)
    p = jobs_commands.add_parser("stuck", parents=[flags.url])
    p.set_defaults(func=_jobs_stuck)
    p = jobs_commands.add_parser("cancel", parents=both)
    p.add_argument("job_id")
    p.set_defaults(func=_jobs_cancel)
    p = jobs_commands.add_parser("retry", parents=both)
    p.add_argument("job_id")
    p.add_argument("--yes", action="store_true", help="confirm retrying an uncertain job")
    p.set_defaults(func=_jobs_retry)
    p = jobs_commands.add_parser("show", parents=both)
    p.add_argument("job_id")
    p.set_defaults(func=_jobs_show)
