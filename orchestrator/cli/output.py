"""How the commands print: JSON, a job's card, a progress bar."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(job)
        return
    rows = [
        ("id", job["id"]),
        ("provider", job["provider"]),
        ("state", job["state"]),
        ("provider job", job.get("provider_job_id") or "-"),
        ("created", job["created_at"]),
        ("updated", job["updated_at"]),
    ]
    if job.get("operation", "upscale") != "upscale":
        # Upscale jobs print as they always have; another operation says which, and its prompt.
        rows.insert(2, ("operation", job["operation"]))
        if job.get("prompt") is not None:
            rows.insert(3, ("prompt", job["prompt"]))
    if job.get("failure"):
        rows.append(("failure", f"{job['failure']['reason']}: {job['failure']['message']}"))
    if job.get("result"):
        r = job["result"]
        rows.append(
            (
                "result",
                f"{r['width']}x{r['height']} {r['content_type']} "
                f"{r['bytes']} bytes sha256 {r['sha256'][:16]}…",
            )
        )
    route = job.get("route") or {}
    if len(route.get("providers") or []) > 1 or route.get("name"):
        named = f" ({route['name']})" if route.get("name") else ""
        rows.insert(2, ("route", ",".join(route["providers"]) + named))
    attempts = job.get("attempts") or []
    if len(attempts) > 1:
        for a in attempts:
            failure = f" {a['failure']['reason']}" if a.get("failure") else ""
            cost = f" cost {a['cost']}" if a.get("cost") is not None else ""
            pjid = a.get("provider_job_id") or "-"
            rows.append(
                (f"attempt {a['number']}", f"{a['provider']} {a['state']}{failure}{cost} {pjid}")
            )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def progress(done: int, total: int, label: str) -> None:
    """A progress bar on stderr for long operations (only on a terminal)."""
    if not sys.stderr.isatty() or total <= 1:
        return
    width = 30
    filled = width * done // total
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\r{label} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)
