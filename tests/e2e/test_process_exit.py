"""A killed service takes its helper processes with it."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Service
from tests.factories import make_png
from tests.processes import command, descendants, wait_gone

pytestmark = pytest.mark.e2e


def test_a_killed_service_leaves_no_local_workers_behind(service: Service) -> None:
    job = service.submit(make_png(16, 12), provider="local")
    assert service.wait([job["id"]], timeout_s=60)[job["id"]]["state"] == "succeeded"
    assert service.proc.popen is not None
    helpers = descendants(service.proc.popen.pid)
    # The local provider's pool workers (and multiprocessing's resource tracker).
    assert helpers, "the local provider started no worker processes"

    service.proc.kill()  # as the OOM killer would: no chance to clean up

    left = wait_gone(helpers, timeout_s=10)
    assert not left, [command(pid) for pid in left]
