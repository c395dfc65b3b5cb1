"""``python -m tests.soak [--quick] [--phases sqlite,postgres] [--seed N]``: run the
service as real processes under load and faults, check the invariants, print a table
of them and exit 1 when one breaks."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.util import load_note, note
from tests.soak import config as sizes
from tests.soak.phase import PhaseReport, run_phase
from tests.soak.procs import kill_pids, tag_this_run, tagged_pids
from tests.soak.table import print_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 300 jobs, SQLite only")
    parser.add_argument(
        "--phases", help="comma-separated: sqlite,postgres (default: all of the size)"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = parser.parse_args(argv)
    config = sizes.quick(args.seed) if args.quick else sizes.full(args.seed)
    if args.phases:
        config = config.with_phases(set(args.phases.split(",")))
    run_id = tag_this_run()
    root = Path(tempfile.mkdtemp(prefix="upscale-soak-"))
    note(f"soak: seed {args.seed}, {config.jobs} jobs, run directory {root}; {load_note()}")
    started = time.monotonic()
    reports: list[PhaseReport] = []
    try:
        for size in config.phases:
            reports.append(_phase(config, size, root / size.name, run_id))
    finally:
        kill_pids(tagged_pids(run_id))
        if not args.keep:
            _remove(root)
    ok = print_report(reports, time.monotonic() - started, args.seed)
    return 0 if ok else 1


def _phase(config: sizes.SoakConfig, size: sizes.PhaseSize, tmp: Path, run_id: str) -> PhaseReport:
    if size.name != "postgres":
        return run_phase(config, size, tmp, run_id)
    from tests.postgres_db import create_database, drop_database, run_sync

    dsn = run_sync(create_database)
    try:
        return run_phase(config, size, tmp, run_id, dsn=dsn)
    finally:
        run_sync(lambda: drop_database(dsn))


def _remove(root: Path) -> None:
    import shutil

    if os.path.ismount(root / "sqlite" / "results"):
        return  # still mounted (an unmount failed): leave it rather than empty a tmpfs
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
