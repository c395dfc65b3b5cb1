"""A large history for the console benchmark, written straight into a migrated SQLite
database with bulk inserts: jobs, their history and events, callback deliveries,
subscriptions with outbound deliveries and their attempts.

Seeding only: the pages under test read it back through the store's verbs.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.common.ids import new_id

# (state, weight): most jobs are finished, a few are stuck or uncertain.
JOB_STATES = (
    ("succeeded", 850),
    ("failed", 80),
    ("cancelled", 20),
    ("submitted", 30),
    ("uncertain", 5),
    ("queued", 10),
    ("fetching", 5),
)
DELIVERY_STATUSES = (("applied", 900), ("duplicate", 50), ("dead", 30), ("unmatched", 20))
HISTORY_SPAN = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Seeded:
    """Ids the benchmark's requests name: a job, a delivery, a subscription, and a
    job id deep in the list for a second page."""

    job_id: str
    middle_job_id: str
    delivery_id: str
    middle_delivery_id: str
    subscription_id: str
    until: str  # a time 20 days back, as a form's datetime-local field sends it
    rare_provider: str
    common_provider: str


def _pick(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    names = [n for n, _ in table]
    weights = [w for _, w in table]
    return rng.choices(names, weights)[0]


def _times(rng: random.Random, count: int, now: datetime) -> list[datetime]:
    """``count`` creation times over the last 30 days, oldest first."""
    span = HISTORY_SPAN.total_seconds()
    return sorted(now - timedelta(seconds=rng.random() * span) for _ in range(count))


JOB_COLUMNS = (
    "id", "provider", "state", "version", "scale", "options", "metadata", "input_url",
    "input_key", "provider_job_id", "result_url", "failure_reason", "failure_message",
    "result", "cost", "attempts", "refetches", "idempotency_key", "request_hash",
    "created_at", "updated_at", "deadline_at", "next_check_at", "lease_until", "retry_of",
    "operation",
)  # fmt: skip
TABLES: dict[str, tuple[str, ...]] = {
    "jobs": JOB_COLUMNS,
    "job_history": ("job_id", "at", "from_state", "to_state", "event", "cause", "detail"),
    "events": ("seq", "type", "job_id", "created_at", "body"),
    "deliveries": (
        "id", "provider", "claimed_job_id", "received_at", "headers", "body", "dedupe_key",
        "source", "status", "job_id", "provider_job_id", "error", "processed_at",
    ),
    "subscriptions": ("id", "url", "types", "job_id", "secrets", "created_at"),
    "outbound": (
        "id", "event_seq", "subscription_id", "job_id", "status", "attempts", "last_status",
        "created_at",
    ),
    "outbound_attempts": ("outbound_id", "at", "status_code", "error", "duration_ms"),
}  # fmt: skip


def history(
    *, jobs: int, deliveries: int, providers: list[str], now: datetime
) -> tuple[dict[str, list[tuple[Any, ...]]], Seeded]:
    """Every table's rows (in ``TABLES``' column order), and the ids the requests name."""
    rng = random.Random(15)
    # One provider takes most jobs, the last one very few (a filter that finds little).
    weights = [60, *([30] * (len(providers) - 2)), 1] if len(providers) > 1 else [1]
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
    ids: list[tuple[str, str, float, str | None]] = []
    events: list[tuple[str, str, float, str]] = []
    result = json.dumps(
        {
            "key": "results/x.png",
            "content_type": "image/png",
            "bytes": 123456,
            "sha256": "0" * 64,
            "width": 2048,
            "height": 2048,
            "format": "PNG",
        }
    )
    for n, at in enumerate(_times(rng, jobs, now)):
        job_id = new_id("job", at)
        provider = rng.choices(providers, weights)[0]
        state = _pick(rng, JOB_STATES)
        operation = "replace" if rng.random() < 0.02 else "upscale"
        ts = at.timestamp()
        done = ts + rng.uniform(2, 60)
        pjid = f"p-{n}" if state != "queued" else None
        rows["jobs"].append(
            (
                job_id,
                provider,
                state,
                3,
                2.0,
                "{}",
                json.dumps({"order": n, "customer": f"c{n % 997}"}),
                "https://images.example.test/in.png",
                None,
                pjid,
                None,
                "provider_error" if state == "failed" else None,
                "the provider said no" if state == "failed" else None,
                result if state == "succeeded" else None,
                0.01 if state == "succeeded" else None,
                1,
                0,
                None,
                None,
                ts,
                done,
                ts + 3600,
                done + 30 if state in ("submitted", "fetching", "queued") else None,
                None,
                None,
                operation,
            )
        )
        ids.append((job_id, provider, ts, pjid))
        steps = [
            (None, "queued", "created", "api", ts),
            ("queued", "submitting", "submit", "engine", ts + 1),
            ("submitting", "submitted", "accepted", "engine", ts + 2),
        ]
        if state not in ("submitted", "queued"):
            steps.append(("submitted", state, "update", "callback:dlv", done))
        for from_state, to_state, event, cause, when in steps:
            rows["job_history"].append((job_id, when, from_state, to_state, event, cause, None))
        events.append(("job.queued", job_id, ts, json.dumps({"type": "job.queued", "n": n})))
        if state in ("succeeded", "failed", "cancelled", "uncertain"):
            events.append((f"job.{state}", job_id, done, json.dumps({"type": state, "n": n})))
    events.sort(key=lambda e: e[2])
    rows["events"] = [(seq, *e) for seq, e in enumerate(events, start=1)]
    rows["deliveries"] = _deliveries(rng, ids, deliveries)
    subscription = _outbound(rows, rng, now)
    seeded = Seeded(
        job_id=ids[-1][0],
        middle_job_id=ids[len(ids) // 2][0],
        delivery_id=str(rows["deliveries"][-1][0]),
        middle_delivery_id=str(rows["deliveries"][len(rows["deliveries"]) // 2][0]),
        until=(now - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M"),
        subscription_id=subscription,
        rare_provider=providers[-1],
        common_provider=providers[0],
    )
    return rows, seeded


def _deliveries(
    rng: random.Random, jobs: list[tuple[str, str, float, str | None]], count: int
) -> list[tuple[Any, ...]]:
    per_job = max(1, count // max(1, len(jobs)))
    rows: list[tuple[Any, ...]] = []
    headers = json.dumps({"content-type": "application/json", "user-agent": "provider/1.0"})
    for job_id, provider, ts, pjid in jobs:
        for k in range(per_job):
            at = ts + 1 + k * 5 + rng.random()
            status = _pick(rng, DELIVERY_STATUSES)
            body = json.dumps({"id": pjid, "status": "done", "n": k}).encode()
            matched = status in ("applied", "duplicate")
            rows.append(
                (
                    new_id("dlv", datetime.fromtimestamp(at, UTC)),
                    provider,
                    job_id if k == 0 else None,
                    at,
                    headers,
                    body,
                    f"{provider}:{pjid}:{k}:{rng.getrandbits(32)}",
                    "live",
                    status,
                    job_id if matched else None,
                    pjid,
                    "could not parse the body" if status == "dead" else None,
                    at + 0.01,
                )
            )
    rows.sort(key=lambda r: r[3])
    return rows


def _outbound(rows: dict[str, list[tuple[Any, ...]]], rng: random.Random, now: datetime) -> str:
    """Two subscriptions; every event of the last tenth of the history went to both."""
    secrets = json.dumps([{"secret": "whsec_bench", "expires_at": None}])
    subs = [new_id("sub", now - HISTORY_SPAN) for _ in range(2)]
    for n, sub in enumerate(subs):
        rows["subscriptions"].append(
            (sub, f"https://hooks.example.test/{n}", None, None, secrets, now.timestamp())
        )
    events = rows["events"]
    for seq, _, job_id, at, _ in events[len(events) - len(events) // 10 :]:
        for sub in subs:
            failed = rng.random() < 0.05
            status, code = ("dead", 500) if failed else ("delivered", 200)
            outbound_id = len(rows["outbound"]) + 1
            rows["outbound"].append((outbound_id, seq, sub, job_id, status, 1, code, at))
            rows["outbound_attempts"].append((outbound_id, at, code, None, 12.5))
    return subs[0]


def write_sqlite(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """Bulk inserts into the migrated SQLite database at ``path``."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    for table, columns in TABLES.items():
        marks = ", ".join("?" for _ in columns)
        db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[table])
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def write_postgres(dsn: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """COPY into the migrated PostgreSQL database at ``dsn``; identities moved past
    the rows copied, the tables vacuumed and analysed."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        for table, columns in TABLES.items():
            await conn.copy_records_to_table(table, records=rows[table], columns=list(columns))
        for table, column in (("events", "seq"), ("outbound", "id")):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" (SELECT MAX({column}) FROM {table}))"
            )
        # As autovacuum would have by then: statistics, and the visibility map that
        # lets a count read its index alone.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
