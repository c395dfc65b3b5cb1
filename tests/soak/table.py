"""The soak's result: one row per invariant and phase, with its figure."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.bench.util import Row
from tests.soak.phase import PhaseReport


def print_report(reports: Sequence[PhaseReport], elapsed_s: float, seed: int) -> bool:
    rows = []
    for report in reports:
        for check in report.checks:
            rows.append(
                Row(
                    f"{report.name}: {check.name}",
                    check.figure,
                    "",
                    met="yes" if check.ok else "NO",
                )
            )
    _print(rows)
    for report in reports:
        for line in report.notes:
            print(f"  {report.name}: {line}")
        for check in report.checks:
            if check.detail:
                print(f"  {report.name}: {check.name}: {check.detail}")
    ok = bool(reports) and all(c.ok for r in reports for c in r.checks)
    print(f"soak {'passed' if ok else 'FAILED'} in {elapsed_s:.0f}s (seed {seed})")
    sys.stdout.flush()
    return ok


def _print(rows: Sequence[Row]) -> None:
    head = ("invariant", "figure", "held?")
    table = [head, *((r.benchmark, r.figure, r.met) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for line in table[1:]:
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
