"""/metrics parses with the Prometheus text parser and its counters match what happened."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Sandbox, free_port, start_service
from tests.factories import make_png

pytestmark = pytest.mark.e2e


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _get(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_what_happened(tmp_path: Path, sandbox: Sandbox) -> None:
    svc = start_service(
        tmp_path, sandbox, port=free_port(), env={"UPSCALE_MAX_CALLBACK_BYTES": "4096"}
    )
    try:
        ids = [svc.submit(make_png(10 + i, 10))["id"] for i in range(2)]
        svc.wait(ids)
        sandbox.faults(drop_callback=1)
        ids += [svc.submit(make_png(20 + i, 10))["id"] for i in range(2)]
        jobs = svc.wait(ids)
        assert {j["state"] for j in jobs.values()} == {"succeeded"}
        forged = httpx.post(f"{svc.base}/callbacks/upsampler/forged", json={}, trust_env=False)
        assert forged.status_code == 404
        assert httpx.get(f"{svc.base}/metrics", trust_env=False).status_code == 401

        response = svc.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        s = _samples(response.text)
        assert _get(s, "upscale_jobs", state="succeeded", provider="upsampler") == 4
        assert _get(s, "upscale_jobs_resolved_total", provider="upsampler", via="callback") == 2
        assert _get(s, "upscale_jobs_resolved_total", provider="upsampler", via="poll") == 2
        assert _get(s, "upscale_callbacks_received_total", provider="upsampler") == 2
        assert (
            _get(s, "upscale_callbacks_processed_total", provider="upsampler", outcome="applied")
            == 2
        )
        assert _get(s, "upscale_callbacks_rejected_total", reason="bad_token") == 1
        assert _get(s, "upscale_jobs_finished_total", provider="upsampler", state="succeeded") == 4
        assert (
            _get(
                s, "upscale_provider_calls_total", provider="upsampler", call="submit", outcome="ok"
            )
            == 4
        )
        assert (
            _get(s, "upscale_provider_calls_total", provider="upsampler", call="poll", outcome="ok")
            >= 2
        )
        total_bytes = sum(j["result"]["bytes"] for j in jobs.values())
        assert _get(s, "upscale_fetch_bytes_total", provider="upsampler") == total_bytes
        assert (
            _get(s, "upscale_job_duration_seconds_count", provider="upsampler", state="succeeded")
            == 4
        )
        assert _get(s, "upscale_result_latency_seconds_count", provider="upsampler") == 4
        assert _get(s, "upscale_outbox_lag_seconds") == 0
        assert _get(s, "upscale_stuck_jobs") == 0
    finally:
        svc.close()
