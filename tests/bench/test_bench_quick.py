"""CI runs every benchmark in its short form: a benchmark that no longer runs
(a setting it relies on changed, a route moved) fails here, not months later.
The figures themselves are not judged: they are too noisy on a shared machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench.util import REPO

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(420)
def test_every_benchmark_runs_in_its_quick_form() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert "FAILED" not in run.stdout, run.stdout
    for name in ("callback ack", "fetch", "scheduler", "end to end", "uploads", "console"):
        assert name in run.stdout, run.stdout
