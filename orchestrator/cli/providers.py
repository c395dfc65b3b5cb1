"""``upscale providers`` and ``upscale callback-url``: the providers and their accounts."""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli.client import check, connect
from orchestrator.cli.flags import Commands, Flags
from orchestrator.cli.output import print_json
from orchestrator.common.settings import load_settings


def _callback_url(args: argparse.Namespace) -> int:
    from orchestrator.common.clock import SystemClock
    from orchestrator.core.urls import account_callback_url
    from orchestrator.providers.registry import ACCOUNT_WEBHOOK
    from orchestrator.security.bootstrap_secrets import signing_keys
    from orchestrator.security.signing import CallbackSigner

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
    with connect(args.url) as client:
        data = check(client.get("/v1/providers"))
    if args.json:
        print_json(data)
        return 0
    print(f"{'PROVIDER':<10} {'MODE':<11} {'CALLBACKS':<9} OPERATIONS")
    for p in data["providers"]:
        operations = ",".join(p.get("operations", []))
        print(f"{p['name']:<10} {p['mode']:<11} {p.get('callbacks', '-'):<9} {operations}")
    return 0


def _providers_balance(args: argparse.Namespace) -> int:
    with connect(args.url) as client:
        data = check(client.get(f"/v1/providers/{args.provider}/balance"))
    if args.json:
        print_json(data)
        return 0
    for key, value in data.items():
        print(f"{key:<12} {value}")
    return 0


def register(commands: Commands, flags: Flags) -> None:
    both = [flags.json, flags.url]
    p = commands.add_parser("callback-url", help="print the account webhook URL to register")
    p.add_argument("provider")
    p.set_defaults(func=_callback_url)

    providers = commands.add_parser("providers", help="providers and their accounts")
    providers_commands = providers.add_subparsers(dest="providers_command", required=True)
    p = providers_commands.add_parser("list", parents=both)
    p.set_defaults(func=_providers_list)
    p = providers_commands.add_parser("balance", parents=both)
    p.add_argument("provider")
    p.set_defaults(func=_providers_balance)
