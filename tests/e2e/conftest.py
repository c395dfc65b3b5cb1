from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Sandbox, Service, start_sandbox, start_service


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    sb = start_sandbox(tmp_path)
    try:
        yield sb
    finally:
        sb.close()


@pytest.fixture
def service(tmp_path: Path, sandbox: Sandbox) -> Iterator[Service]:
    svc = start_service(tmp_path, sandbox)
    try:
        yield svc
    finally:
        svc.close()
