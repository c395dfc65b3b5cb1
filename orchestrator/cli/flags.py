"""The flags that many commands share, each defined once as a parent parser."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TypeAlias

# What ``add_subparsers`` returns: the place a command group adds its commands to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class Flags:
    """Parent parsers: ``parents=[flags.url]`` gives a command ``--url``,
    ``parents=[flags.url, flags.json]`` gives it ``--url`` and ``--json``."""

    url: argparse.ArgumentParser
    json: argparse.ArgumentParser


def shared_flags() -> Flags:
    """The service's address defaults to ``UPSCALE_URL``, read when the parser is built."""
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=os.environ.get("UPSCALE_URL", DEFAULT_URL))
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true")
    return Flags(url=url, json=as_json)
