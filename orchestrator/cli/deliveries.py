"""``upscale deliveries`` and ``upscale replay``: the callback inbox, replaying what
it holds and injecting a callback captured elsewhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_json, progress


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
    with connect(args.url) as client:
        data = check(client.get("/v1/deliveries", params=params))
    if args.json:
        print_json(data)
        return 0
    print(f"{'DELIVERY':<32} {'PROVIDER':<10} {'STATUS':<10} {'SOURCE':<9} {'JOB':<32} ERROR")
    for d in data["deliveries"]:
        print(
            f"{d['id']:<32} {d['provider']:<10} {d['status']:<10} {d['source']:<9} "
            f"{d['job_id'] or '-':<32} {d['error'] or ''}"
        )
    return 0


def _deliveries_show(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        data = check(client.get(f"/v1/deliveries/{args.delivery_id}"))
    print_json(data)
    return 0


def _deliveries_replay(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        if args.delivery_id:
            result = check(client.post(f"/v1/deliveries/{args.delivery_id}/replay"))
            print(f"{result['delivery_id']}: {result['message']}")
            return 0
        if not args.status:
            raise SystemExit("error: give a delivery id, or --status (with --since)")
        listing = check(
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
            result = check(client.post(f"/v1/deliveries/{d['id']}/replay"))
            progress(n, len(todo), "replaying")
            if not sys.stderr.isatty():
                print(f"{result['delivery_id']}: {result['message']}")
        print(f"replayed {len(todo)} deliveries")
    return 0


def _inject(args: argparse.Namespace) -> int:
    body = Path(args.file).read_bytes()
    params = {"job_id": args.job} if args.job else {}
    with connect(args.url) as client:
        answer = check(
            client.post(
                f"/v1/inject/{args.provider}",
                content=body,
                params=params,
                headers={"content-type": "application/json"},
            )
        )
    print(f"injected as {answer['delivery']}: {answer['status']}")
    return 0


def register(commands: Commands, flags: Flags) -> None:
    deliveries = commands.add_parser("deliveries", help="the callback inbox")
    deliveries_commands = deliveries.add_subparsers(dest="deliveries_command", required=True)
    p = deliveries_commands.add_parser("list", parents=[flags.json, flags.url])
    p.add_argument("--status", choices=["pending", "applied", "duplicate", "unmatched", "dead"])
    p.add_argument("--provider")
    p.add_argument("--since", help="e.g. 1h, 30m, 2d")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_deliveries_list)
    p = deliveries_commands.add_parser("show", parents=[flags.url])
    p.add_argument("delivery_id")
    p.set_defaults(func=_deliveries_show)
    p = deliveries_commands.add_parser("replay", parents=[flags.url])
    p.add_argument("delivery_id", nargs="?")
    p.add_argument("--status", choices=["pending", "unmatched", "dead", "duplicate"])
    p.add_argument("--since", help="e.g. 24h")
    p.set_defaults(func=_deliveries_replay)

    p = commands.add_parser(
        "replay", parents=[flags.url], help="inject a callback captured elsewhere"
    )
    p.add_argument("--provider", required=True)
    p.add_argument("--file", required=True, help="the callback body (JSON)")
    p.add_argument("--job", help="the job it belongs to (for per-job callbacks)")
    p.set_defaults(func=_inject)
