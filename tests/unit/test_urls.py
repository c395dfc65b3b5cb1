"""The URLs the service hands out: each verifies back to what it was minted for,
and the CLI prints the same account URL the running service would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main as cli_main
from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.core.urls import Urls, account_callback_url
from orchestrator.security.signing import CallbackSigner, InputSigner
from schemas.jobs import Job, JobState

BASE = "https://svc.example"
KEYS = (Secret("key-one"),)


def make_job(**overrides: Any) -> Job:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": "job_1",
        "provider": "upsampler",
        "state": JobState.QUEUED,
        "version": 1,
        "scale": 2.0,
        "options": {},
        "metadata": None,
        "input_url": None,
        "input_key": "job_1.png",
        "provider_job_id": None,
        "result_url": None,
        "failure": None,
        "result": None,
        "cost": None,
        "attempts": 0,
        "refetches": 0,
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(hours=1),
        "next_check_at": now,
    }
    fields.update(overrides)
    return Job(**fields)


@pytest.fixture
def urls() -> Urls:
    clock = SystemClock()
    return Urls(
        public_base=BASE,
        callback_signer=CallbackSigner(KEYS, clock),
        input_signer=InputSigner(KEYS, clock),
        clock=clock,
        input_url_ttl_s=600,
    )


def _token(url: str, provider: str) -> str:
    prefix = f"{BASE}/callbacks/{provider}/"
    assert url.startswith(prefix)
    return url.removeprefix(prefix)


def test_a_job_callback_url_names_its_job(urls: Urls) -> None:
    url = urls.callback_url("upsampler", make_job())
    claims = urls.callback_signer.verify("upsampler", _token(url, "upsampler"))
    assert (claims.provider, claims.job_id) == ("upsampler", "job_1")


def test_an_account_callback_url_names_no_job(urls: Urls) -> None:
    url = urls.account_callback_url("fotor")
    assert urls.callback_signer.verify("fotor", _token(url, "fotor")).job_id is None
    again = account_callback_url(BASE, urls.callback_signer, "fotor")
    assert urls.callback_signer.verify("fotor", _token(again, "fotor")).job_id is None


def test_an_input_url_is_the_clients_own_or_a_signed_one_of_ours(urls: Urls) -> None:
    assert urls.input_url(make_job(input_url="https://in.example/a.png")) == (
        "https://in.example/a.png"
    )
    ours = urls.input_url(make_job())
    assert ours is not None and ours.startswith(f"{BASE}/inputs/")
    assert urls.input_signer.verify(ours.removeprefix(f"{BASE}/inputs/")) == "job_1.png"
    assert urls.input_url(make_job(input_key=None)) is None


def test_the_cli_prints_the_account_url_the_service_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UPSCALE_PUBLIC_URL", BASE)
    monkeypatch.setenv("UPSCALE_SECRET_KEYS", "key-one")
    monkeypatch.setenv("UPSCALE_DATA_DIR", str(tmp_path))
    assert cli_main(["callback-url", "fotor"]) == 0
    url = capsys.readouterr().out.strip()
    signer = CallbackSigner(KEYS, SystemClock())
    assert signer.verify("fotor", _token(url, "fotor")).job_id is None


def test_a_replace_jobs_mask_url_is_signed_like_its_image(urls: Urls) -> None:
    job = make_job(mask_key="job_1_mask.png")
    mask = urls.mask_url(job)
    assert mask is not None and mask.startswith(f"{BASE}/inputs/")
    assert urls.input_signer.verify(mask.rsplit("/", 1)[-1]) == "job_1_mask.png"
    assert mask != urls.input_url(job)
    assert urls.mask_url(make_job()) is None
