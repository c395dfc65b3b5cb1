"""``upscale reconcile``: ask providers about jobs now and apply the answer."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import progress


def _reconcile(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        if args.job_id:
            params = {"dry_run": "1"} if args.dry_run else {}
            results = [check(client.post(f"/v1/jobs/{args.job_id}/reconcile", params=params))]
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
            check(response)
        for line in response.iter_lines():
            if not line.strip():
                continue
            item = json.loads(line)
            if "queued" in item:
                total = len(item["queued"])
            elif "result" in item:
                results.append(item["result"])
                progress(len(results), total, "reconciling")
    return results


def register(commands: Commands, flags: Flags) -> None:
    p = commands.add_parser(
        "reconcile",
        parents=[flags.url],
        help="ask providers about jobs now and apply the answer",
    )
    p.add_argument("job_id", nargs="?")
    p.add_argument("--stuck", action="store_true")
    p.add_argument("--since", help="jobs created in the last e.g. 2h")
    p.add_argument("--state")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.set_defaults(func=_reconcile)
