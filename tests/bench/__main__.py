"""Run the benchmarks and print one table.

    python -m tests.bench [--quick] [--only callbacks,callbacks_pg,fetch,console,...]

``python -m tests.bench.profile_ack`` prints where the callback ack path's time goes.

Progress, details and profiling hints go to stderr; the table to stdout. Each
benchmark compares against a baseline measured in the same run. Everything runs
on 127.0.0.1; every server started is stopped when its benchmark ends.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable

from tests.bench import callbacks, console, end_to_end, fetch, postgres_ack, scheduler, uploads
from tests.bench.util import Row, note, print_table

BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "callbacks": callbacks.run,
    "callbacks_pg": postgres_ack.run,
    "fetch": fetch.run,
    "scheduler": scheduler.run,
    "end_to_end": end_to_end.run,
    "uploads": uploads.run,
    "console": console.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< ~90 s)")
    parser.add_argument(
        "--only", default="", help="comma-separated subset of " + ",".join(BENCHMARKS)
    )
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.perf_counter()
    rows: list[Row] = []
    failed = False
    for name in chosen:
        t0 = time.perf_counter()
        try:
            rows += BENCHMARKS[name](args.quick)
        except Exception as exc:  # one failing benchmark must not hide the others
            failed = True
            traceback.print_exc()
            rows.append(Row(name, "FAILED", f"{type(exc).__name__}: {exc}"[:80]))
        note(f"  ({name} took {time.perf_counter() - t0:.1f} s)")
    note(f"all benchmarks took {time.perf_counter() - started:.1f} s")
    print()
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
