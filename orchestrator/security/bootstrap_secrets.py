"""Secrets the service makes for itself on first start, kept in the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from orchestrator.common.settings import Secret
from orchestrator.security.private_files import create_private_file, make_private_dir

SECRET_KEYS_FILE = "secret_keys"  # noqa: S105 (a file name)
API_TOKEN_FILE = "api_token"  # noqa: S105 (a file name)


def _read_or_create(path: Path, make: str) -> str:
    make_private_dir(path.parent)
    try:
        fd = create_private_file(path)
    except FileExistsError:
        return path.read_text("utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(make + "\n")
    return make


def signing_keys(configured: tuple[Secret, ...], data_dir: Path) -> tuple[Secret, ...]:
    """The configured keys, or one generated once and kept so callbacks survive restarts."""
    if configured:
        return configured
    text = _read_or_create(data_dir / SECRET_KEYS_FILE, secrets.token_urlsafe(32))
    return tuple(Secret(k.strip()) for k in text.split(",") if k.strip())


def api_tokens(
    configured: tuple[Secret, ...], data_dir: Path
) -> tuple[tuple[Secret, ...], Path | None]:
    """The configured API tokens, or a generated one and the file it is kept in."""
    if configured:
        return configured, None
    path = data_dir / API_TOKEN_FILE
    return (Secret(_read_or_create(path, secrets.token_urlsafe(24))),), path


def read_api_token(data_dir: Path) -> str | None:
    path = data_dir / API_TOKEN_FILE
    try:
        return path.read_text("utf-8").strip() or None
    except OSError:
        return None
