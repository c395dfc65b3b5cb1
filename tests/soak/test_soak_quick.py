"""CI runs the quick soak (about 300 jobs, SQLite) and expects every invariant to hold."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench.util import REPO

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(420)
def test_quick_soak_holds_every_invariant() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.soak", "--quick", "--seed", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert "invariant" in run.stdout, run.stderr[-4000:]
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
