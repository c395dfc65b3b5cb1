"""Everything the service writes under its data directory is for its own user only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import Proc, Service, _upscale_cmd, free_port
from tests.factories import make_png


@contextmanager
def loose_umask() -> Iterator[None]:
    """The service inherits a umask that would leave files world-readable."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def test_database_secrets_inputs_and_results_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    # No configured token or keys: the service generates them into the data dir.
    env.update({"UPSCALE_DATA_DIR": str(data_dir), "UPSCALE_LOCAL_ENGINE": "lanczos"})
    port = free_port()
    proc = Proc(
        [*_upscale_cmd(), "serve", "--port", str(port)],
        env,
        tmp_path / "service.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    with loose_umask():
        proc.start(timeout_s=60)
    service = Service(port, data_dir, proc)
    try:
        token = (data_dir / "api_token").read_text().strip()
        service.client.headers["Authorization"] = f"Bearer {token}"
        job = service.submit(make_png(32, 24), provider="local")
        done = service.wait([job["id"]], timeout_s=60)[job["id"]]
        assert done["state"] == "succeeded", done
    finally:
        service.close()

    names = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")}
    for expected in ("upscale.db", "api_token", "secret_keys", "results", "inputs"):
        assert expected in names
    assert any(n.startswith("results/job_") for n in names)
    assert any(n.startswith("inputs/job_") for n in names)
    loose = {
        p.relative_to(data_dir).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
        for p in [data_dir, *data_dir.rglob("*")]
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert not loose, " ".join(f"{k}={v}" for k, v in sorted(loose.items()))
