"""Faults the soak injects besides killing processes: sandbox fault profiles, a SQLite
write lock held from outside, and a results disk that fills up."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Every sandbox fault, at high rates. quota_per_day is left out on purpose (see SKIPPED).
HEAVY: dict[str, Any] = {
    "drop_callback": 0.3,
    "duplicate_callback": 0.3,
    "early_callback": 0.2,
    "delay_callback_s": 0.3,
    "submit_429": 0.1,
    "submit_500": 0.1,
    "status_429": 0.1,
    "status_500": 0.1,
    "submit_timeout": 0.01,
    "submit_timeout_s": 8,
    "expire_result": 0.1,
    "corrupt_result": 0.03,
    "error_in_200": 0.05,
    "no_credit": 0.02,
    "s3_result": 0.3,
    "nsfw": 0.02,
    "empty_result": 0.02,
    "progress_callbacks": 1,
    "status_in_body": 0.05,
    "data_uri_body": 0.3,
    "processing_s": 0.5,
    "retry_after_s": 1,
}
CALLBACK_STORM = {
    **HEAVY,
    "drop_callback": 0.5,
    "duplicate_callback": 0.6,
    "early_callback": 0.6,
    "delay_callback_s": 1.0,
    "processing_s": 1.0,
}
THROTTLED = {
    **HEAVY,
    "submit_429": 0.4,
    "status_429": 0.4,
    "submit_500": 0.2,
    "status_500": 0.2,
    "retry_after_s": 2,
}
BAD_RESULTS = {
    **HEAVY,
    "expire_result": 0.4,
    "corrupt_result": 0.1,
    "s3_result": 1,
    "data_uri_body": 1,
}
TIMEOUTS = {**HEAVY, "submit_timeout": 0.05}
PROFILES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("heavy", HEAVY),
    ("callback-storm", CALLBACK_STORM),
    ("throttled", THROTTLED),
    ("bad-results", BAD_RESULTS),
    ("timeouts", TIMEOUTS),
)
SKIPPED = {
    "quota_per_day": "holds Artnex jobs for an hour by design (covered by "
    "test_artnex_daily_quota_holds_jobs_instead_of_hammering), longer than a soak run",
}


def foreign_results(profile: dict[str, Any], sandbox_port: int) -> dict[str, Any]:
    """Result URLs on another origin, a private address the fetch guard must refuse."""
    return {**profile, "result_base_url": f"http://127.0.0.2:{sandbox_port}/sandbox"}


def hold_write_lock(db: Path, hold_s: float) -> float:
    """Take SQLite's write lock from this process (``BEGIN IMMEDIATE``) and hold it;
    returns how long it was held (0 if it could not be taken within 10 s)."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return 0.0
        started = time.monotonic()
        time.sleep(hold_s)
        conn.execute("ROLLBACK")
        return time.monotonic() - started
    finally:
        conn.close()


@contextlib.contextmanager
def results_tmpfs(directory: Path, size_mb: int) -> Iterator[str | None]:
    """A small tmpfs at ``directory``; yields None when mounted, else why it could not be."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield "not root: cannot mount a tmpfs for the results"
        return
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        yield f"mount of a tmpfs failed: {mount.stderr.strip() or mount.returncode}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill_disk(directory: Path, hold_s: float) -> int:
    """Fill the filesystem of ``directory`` to the last byte, hold, free it; bytes written."""
    filler = directory / ".soak-filler"
    written = 0
    block = b"\0" * (1 << 20)
    try:
        with filler.open("wb", buffering=0) as fh:
            while True:
                try:
                    written += fh.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    # the last partial block: byte by byte would be slow; 4 KiB steps
                    small = b"\0" * 4096
                    with contextlib.suppress(OSError):
                        while True:
                            written += fh.write(small)
                    break
        time.sleep(hold_s)
    finally:
        filler.unlink(missing_ok=True)
    return written
