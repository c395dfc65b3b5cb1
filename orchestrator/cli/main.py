"""``upscale``: run the service, the worker loops or the sandbox; submit and inspect jobs."""

from __future__ import annotations

import argparse
import sys

import httpx

from orchestrator.cli import (
    database,
    deliveries,
    events,
    jobs,
    providers,
    reconcile,
    sandbox,
    serve,
    submit,
    subscriptions,
    worker,
)
from orchestrator.cli.client import unreachable
from orchestrator.cli.flags import shared_flags

# In the order ``upscale --help`` lists them.
GROUPS = (
    serve,
    worker,
    database,
    sandbox,
    submit,
    providers,
    events,
    subscriptions,
    deliveries,
    reconcile,
    jobs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upscale", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    flags = shared_flags()
    for group in GROUPS:
        group.register(commands, flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except httpx.HTTPError as exc:
        print(unreachable(args.url, exc), file=sys.stderr)
        return 2
    return code
