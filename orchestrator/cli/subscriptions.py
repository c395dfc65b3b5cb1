"""``upscale subscriptions``: outbound webhook subscriptions and their deliveries."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_json


def _subscriptions_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.target}
    if args.types:
        body["types"] = [t for t in args.types.split(",") if t]
    with connect(args.url) as client:
        sub = check(client.post("/v1/subscriptions", json=body))
    if args.json:
        print_json(sub)
    else:
        print(f"subscription {sub['id']} -> {sub['url']}")
        print(f"signing secret (shown once): {sub['secret']}")
    return 0


def _subscriptions_list(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        data = check(client.get("/v1/subscriptions"))
    if args.json:
        print_json(data)
        return 0
    print(f"{'ID':<32} {'STATE':<9} {'TYPES':<30} URL")
    for sub in data["subscriptions"]:
        state = "disabled" if sub["disabled"] else "active"
        types = ",".join(sub["types"] or ["*"])
        print(f"{sub['id']:<32} {state:<9} {types:<30} {sub['url']}")
    return 0


def _subscriptions_remove(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        response = client.delete(f"/v1/subscriptions/{args.subscription_id}")
        if response.status_code != 204:
            check(response)
    print(f"removed {args.subscription_id}")
    return 0


def _subscriptions_rotate(args: argparse.Namespace) -> int:
    body = {"grace_s": args.grace_s} if args.grace_s is not None else {}
    with connect(args.url) as client:
        sub = check(client.post(f"/v1/subscriptions/{args.subscription_id}/secret", json=body))
    print(f"new signing secret: {sub['secret']}")
    return 0


def _subscriptions_deliveries(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        data = check(client.get(f"/v1/subscriptions/{args.subscription_id}/deliveries"))
    if args.json:
        print_json(data)
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


def register(commands: Commands, flags: Flags) -> None:
    both = [flags.json, flags.url]
    subs = commands.add_parser("subscriptions", help="outbound webhook subscriptions")
    subs_commands = subs.add_subparsers(dest="subscriptions_command", required=True)
    p = subs_commands.add_parser("add", parents=both)
    p.add_argument("target", metavar="URL")
    p.add_argument("--types", help="event types, comma-separated (default: all)")
    p.set_defaults(func=_subscriptions_add)
    p = subs_commands.add_parser("list", parents=both)
    p.set_defaults(func=_subscriptions_list)
    p = subs_commands.add_parser("remove", parents=[flags.url])
    p.add_argument("subscription_id")
    p.set_defaults(func=_subscriptions_remove)
    p = subs_commands.add_parser("rotate", parents=[flags.url])
    p.add_argument("subscription_id")
    p.add_argument("--grace-s", type=float, help="seconds the old secret keeps signing")
    p.set_defaults(func=_subscriptions_rotate)
    p = subs_commands.add_parser("deliveries", parents=both)
    p.add_argument("subscription_id")
    p.set_defaults(func=_subscriptions_deliveries)
