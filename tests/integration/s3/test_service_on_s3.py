"""The service with its results in an S3 bucket (SeaweedFS on 127.0.0.1), end to end."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Sandbox, Service, start_sandbox, start_service
from tests.factories import make_png
from tests.integration.s3.conftest import SeaweedS3


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    sb = start_sandbox(tmp_path)
    try:
        yield sb
    finally:
        sb.close()


def test_results_go_to_the_bucket_and_are_served_from_it(
    tmp_path: Path, sandbox: Sandbox, seaweed_s3: SeaweedS3
) -> None:
    env = {
        "UPSCALE_RESULTS_URL": f"s3://{seaweed_s3.bucket}/svc-{tmp_path.name}",
        **seaweed_s3.env(),
    }
    svc: Service = start_service(tmp_path, sandbox, env=env)
    try:
        job = svc.submit(make_png(21, 13))
        done = svc.wait([job["id"]])[job["id"]]
        assert done["state"] == "succeeded", done
        image = svc.client.get(f"/v1/jobs/{job['id']}/result")
        assert image.status_code == 200
        assert hashlib.sha256(image.content).hexdigest() == done["result"]["sha256"]
        assert int(image.headers["content-length"]) == done["result"]["bytes"]
        assert svc.result_files() == []  # nothing on the local disk
        # Uploaded inputs live in the bucket too, for the provider to fetch from
        # any web process (Upsampler by URL above; Photio gets the bytes).
        assert not list((svc.data_dir / "inputs").glob("*.png"))
        inline = svc.submit(make_png(9, 7), provider="photio")
        assert svc.wait([inline["id"]])[inline["id"]]["state"] == "succeeded"
    finally:
        svc.close()
