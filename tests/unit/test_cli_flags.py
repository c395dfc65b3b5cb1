"""The shared flags: every command takes --url and --json exactly where it always has."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from orchestrator.cli.flags import DEFAULT_URL
from orchestrator.cli.main import build_parser

# Every runnable command, and whether it takes --url and --json (as `upscale` 1.x did).
SHARED = {
    "serve": (False, False),
    "worker": (False, False),
    "db migrate": (False, False),
    "sandbox": (False, False),
    "submit": (True, True),
    "callback-url": (False, False),
    "providers list": (True, True),
    "providers balance": (True, True),
    "events list": (True, True),
    "events redeliver": (True, False),
    "subscriptions add": (True, True),
    "subscriptions list": (True, True),
    "subscriptions remove": (True, False),
    "subscriptions rotate": (True, False),
    "subscriptions deliveries": (True, True),
    "deliveries list": (True, True),
    "deliveries show": (True, False),
    "deliveries replay": (True, False),
    "replay": (True, False),
    "reconcile": (True, False),
    "jobs list": (True, True),
    "jobs stuck": (True, False),
    "jobs cancel": (True, True),
    "jobs retry": (True, True),
    "jobs show": (True, True),
}

# The arguments each command needs besides the shared flags.
REQUIRED = {
    "submit": ["a.png", "--provider", "local"],
    "callback-url": ["fotor"],
    "providers balance": ["fotor"],
    "events redeliver": ["evt_1"],
    "subscriptions add": ["https://hooks.example/x"],
    "subscriptions remove": ["sub_1"],
    "subscriptions rotate": ["sub_1"],
    "subscriptions deliveries": ["sub_1"],
    "deliveries show": ["dlv_1"],
    "replay": ["--provider", "upsampler", "--file", "cb.json"],
    "jobs cancel": ["job_1"],
    "jobs retry": ["job_1"],
    "jobs show": ["job_1"],
}


def _commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[str]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path
    for group in groups:
        for name, child in group.choices.items():
            yield from _commands(child, f"{path} {name}".strip())


def test_the_table_names_every_command() -> None:
    assert sorted(_commands(build_parser())) == sorted(SHARED)


@pytest.mark.parametrize("command", sorted(SHARED))
def test_url_and_json_where_they_always_were(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    takes_url, takes_json = SHARED[command]
    argv = [*command.split(), *REQUIRED.get(command, [])]
    parser = build_parser()

    plain = parser.parse_args(argv)
    assert plain.func is not None
    if takes_url:
        assert parser.parse_args([*argv, "--url", "http://10.1.2.3:9"]).url == "http://10.1.2.3:9"
    else:
        with pytest.raises(SystemExit) as refused:
            parser.parse_args([*argv, "--url", "http://10.1.2.3:9"])
        assert refused.value.code == 2
    if takes_json:
        assert plain.json is False
        assert parser.parse_args([*argv, "--json"]).json is True
    else:
        with pytest.raises(SystemExit) as refused:
            parser.parse_args([*argv, "--json"])
        assert refused.value.code == 2
    capsys.readouterr()


def test_url_defaults_to_upscale_url_then_the_local_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("UPSCALE_URL", raising=False)
    assert build_parser().parse_args(["jobs", "list"]).url == DEFAULT_URL == "http://127.0.0.1:8000"
    monkeypatch.setenv("UPSCALE_URL", "http://upscale.internal:8000")
    assert build_parser().parse_args(["jobs", "list"]).url == "http://upscale.internal:8000"
    assert build_parser().parse_args(["reconcile", "--stuck"]).url == "http://upscale.internal:8000"


def test_help_names_the_shared_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        build_parser().parse_args(["jobs", "retry", "--help"])
    assert shown.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--json", "--url URL", "--yes", "confirm retrying an uncertain job", "job_id"):
        assert flag in out
