"""``upscale events``: the event feed, and redelivering an event to subscribers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_json


def _events_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.after:
        params["after"] = args.after
    if args.type:
        params["type"] = args.type
    with connect(args.url) as client:
        page = check(client.get("/v1/events", params=params))
    if args.json:
        print_json(page)
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
    with connect(args.url) as client:
        answer = check(client.post(f"/v1/events/{args.event_id}/redeliver", json=body))
    print(f"queued {answer['queued']} deliveries of {answer['event_id']}")
    return 0


def register(commands: Commands, flags: Flags) -> None:
    events = commands.add_parser("events", help="the event feed")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    p = events_commands.add_parser("list", parents=[flags.json, flags.url])
    p.add_argument("--after", help="an event id (cursor)")
    p.add_argument("--type", help="event types, comma-separated")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_events_list)
    p = events_commands.add_parser("redeliver", parents=[flags.url])
    p.add_argument("event_id")
    p.add_argument("--subscription", help="only to this subscription")
    p.set_defaults(func=_events_redeliver)
