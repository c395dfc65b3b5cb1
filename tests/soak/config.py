"""How big a soak run is: the default (about 2,000 jobs, 10 minutes) and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass, replace

PROVIDERS = ("upsampler", "fotor", "photio", "artnex", "local")


@dataclass(frozen=True)
class PhaseSize:
    """One phase: a topology (``sqlite``: one ``serve``; ``postgres``: web and worker
    processes) driven by ``jobs`` jobs over ``load_s`` seconds."""

    name: str
    jobs: int
    load_s: float
    kills: int  # SIGKILLs of service processes at random moments of the load
    lock_holds: int  # BEGIN IMMEDIATE held on the SQLite file by the soak (SQLite only)
    lock_hold_s: float
    outage_in_load_s: float  # subscriber down while jobs run
    outage_in_quiet_s: float  # subscriber down while the service only waits (0: none)
    quiet_s: float  # CPU measured while nothing happens
    disk_full_s: float  # the results tmpfs filled for this long (0: not in this phase)


@dataclass(frozen=True)
class SoakConfig:
    phases: tuple[PhaseSize, ...]
    seed: int
    settle_s: float  # how long jobs may take to settle after the load ends
    events_s: float  # how long every event may take to reach the subscriber
    job_deadline_s: int
    results_tmpfs_mb: int

    @property
    def jobs(self) -> int:
        return sum(p.jobs for p in self.phases)

    def with_phases(self, names: set[str]) -> SoakConfig:
        return replace(self, phases=tuple(p for p in self.phases if p.name in names))


def full(seed: int) -> SoakConfig:
    return SoakConfig(
        phases=(
            PhaseSize("sqlite", 1300, 220.0, 4, 3, 6.0, 60.0, 60.0, 20.0, 10.0),
            PhaseSize("postgres", 700, 110.0, 4, 0, 0.0, 30.0, 0.0, 20.0, 0.0),
        ),
        seed=seed,
        settle_s=150.0,
        events_s=150.0,
        job_deadline_s=240,
        results_tmpfs_mb=64,
    )


def quick(seed: int) -> SoakConfig:
    return SoakConfig(
        phases=(PhaseSize("sqlite", 300, 75.0, 3, 2, 6.0, 20.0, 20.0, 10.0, 6.0),),
        seed=seed,
        settle_s=90.0,
        events_s=90.0,
        job_deadline_s=150,
        results_tmpfs_mb=32,
    )
