"""Hostile inputs against the running service and the standalone sandbox: no request
the service or its sandbox makes on a caller's behalf reaches a non-public address.

Every test ends by checking the canary (127.0.0.2 and another 127.0.0.1 port) saw
nothing: not through a job's image URL in any spelling, a redirect from an allowed
origin, a name that resolves to loopback, a webhook, a subscription, or the
sandbox's own provider APIs.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import free_port
from tests.security.canary import (
    MARKER,
    PNG,
    SECRET,
    TOKEN,
    Canary,
    Redirector,
    canary_and_redirector,
    clean_env,
    running,
    wait_settled,
)

pytestmark = pytest.mark.e2e

PROVIDERS = ["upsampler", "fotor", "photio", "artnex", "local"]
IMAGE_B64 = base64.b64encode(PNG).decode()


@pytest.fixture(scope="module")
def targets() -> Iterator[tuple[Canary, Redirector]]:
    with canary_and_redirector() as pair:
        yield pair


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, targets: tuple[Canary, Redirector]
) -> Iterator[httpx.Client]:
    """`upscale serve` on its defaults (127.0.0.1, sandbox mounted); the redirector's
    origin is allowed, as an operator would allow a trusted image host."""
    _, redirector = targets
    tmp = tmp_path_factory.mktemp("guard")
    port = free_port()
    env = clean_env(
        UPSCALE_DATA_DIR=str(tmp / "data"),
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_SECRET_KEYS=SECRET,
        UPSCALE_FETCH_ALLOW_HOSTS=f"127.0.0.1:{redirector.port}",
        UPSCALE_POLL_GRACE_S="1",
        UPSCALE_POLL_BASE_S="0.3",
        UPSCALE_POLL_CAP_S="1",
    )
    with (
        running(tmp, ["serve"], env, port=port, health="/healthz"),
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30.0,
            trust_env=False,
        ) as client,
    ):
        yield client


@pytest.fixture(autouse=True)
def nothing_reaches_the_canary(targets: tuple[Canary, Redirector]) -> Iterator[None]:
    canary, _ = targets
    yield
    time.sleep(0.3)  # anything still in flight
    assert canary.hits == [], f"requests reached the canary: {canary.hits}"


def _spellings(canary: Canary) -> list[str]:
    port = canary.loopback_port
    return [
        f"{canary.private}/a.png",
        f"http://127.0.0.1:{port}/a.png",
        f"http://localhost:{port}/a.png",
        f"http://2130706433:{port}/a.png",
        f"http://0x7f000001:{port}/a.png",
        f"http://0.0.0.0:{port}/a.png",
        f"http://[::ffff:127.0.0.1]:{port}/a.png",
        f"http://[::ffff:127.0.0.2]:{canary.private_port}/a.png",
        "http://169.254.169.254/latest/meta-data/",
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_non_public_image_url_is_refused_at_intake(
    service: httpx.Client, targets: tuple[Canary, Redirector], provider: str
) -> None:
    canary, _ = targets
    for url in _spellings(canary):
        r = service.post("/v1/jobs", json={"provider": provider, "scale": 2, "image": url})
        assert r.status_code == 400, (url, r.text)
        error = r.json()["error"]
        assert "non-public address" in error["message"], (url, error)
        assert "UPSCALE_FETCH_ALLOW_HOSTS" in error["message"]
    assert service.get("/v1/jobs", params={"provider": provider}).json()["jobs"] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_from_an_allowed_origin_to_a_private_one_is_not_followed(
    service: httpx.Client, targets: tuple[Canary, Redirector], provider: str
) -> None:
    _, redirector = targets
    r = service.post("/v1/jobs", json={"provider": provider, "scale": 2, "image": redirector.url})
    assert r.status_code == 202, r.text
    job = wait_settled(service, r.json()["id"])
    assert job["state"] == "failed", job
    message = job["failure"]["message"]
    # Nothing about what the refused address would have answered.
    assert MARKER not in message and "127.0.0.2" not in message, message
    # (The provider's own status may show; the redirect's 302 and the canary's 200 may not.)
    assert "HTTP 200" not in message and "302" not in message, message
    assert "could not be fetched" in message or "download" in message, message
    assert service.get(f"/v1/jobs/{job['id']}/result").status_code != 200


def test_a_routed_job_with_a_non_public_image_url_is_refused_at_intake(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    """One check of the URL covers every provider on the route, the fallbacks too."""
    canary, _ = targets
    before = service.get("/v1/jobs").json()["jobs"]
    for route in (PROVIDERS, list(reversed(PROVIDERS)), ["local", "upsampler"]):
        for url in _spellings(canary):
            r = service.post("/v1/jobs", json={"providers": route, "scale": 2, "image": url})
            assert r.status_code == 400, (route, url, r.text)
            assert "non-public address" in r.json()["error"]["message"], (route, url)
    assert service.get("/v1/jobs").json()["jobs"] == before


def test_a_failover_never_fetches_a_private_address(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    """An allowed origin that redirects to a private one: every provider on the route
    refuses the redirect, attempt after attempt, and the canary hears nothing."""
    _, redirector = targets
    r = service.post("/v1/jobs", json={"providers": PROVIDERS, "scale": 2, "image": redirector.url})
    assert r.status_code == 202, r.text
    job = wait_settled(service, r.json()["id"], timeout_s=120.0)
    assert job["state"] == "failed", job
    # It did move on: every provider of the route had its go, and none got through.
    assert [a["provider"] for a in job["attempts"]] == PROVIDERS, job["attempts"]
    assert job["route"]["providers"] == PROVIDERS
    message = job["failure"]["message"]
    assert MARKER not in message and "127.0.0.2" not in message, message
    for attempt in job["attempts"]:
        failure = attempt.get("failure") or {}
        assert MARKER not in str(failure) and "127.0.0.2" not in str(failure), attempt
    assert service.get(f"/v1/jobs/{job['id']}/result").status_code != 200


def test_a_private_webhook_url_on_a_job_is_refused(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, _ = targets
    for hook in (f"{canary.private}/hook", f"http://localhost:{canary.loopback_port}/hook"):
        r = service.post(
            "/v1/jobs",
            json={"provider": "local", "scale": 2, "image": IMAGE_B64, "webhook_url": hook},
        )
        assert r.status_code == 400, r.text
        assert "UPSCALE_WEBHOOK_ALLOW_HOSTS" in r.json()["error"]["message"]


def test_a_subscription_to_a_private_address_is_refused(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, _ = targets
    for url in (
        f"{canary.private}/hook",
        f"http://localhost:{canary.loopback_port}/hook",
        f"http://2130706433:{canary.loopback_port}/hook",
    ):
        r = service.post("/v1/subscriptions", json={"url": url})
        assert r.status_code == 400, (url, r.text)
        assert "non-public address" in r.json()["error"]["message"]
    assert service.get("/v1/subscriptions").json()["subscriptions"] == []


def test_the_mounted_sandbox_does_not_fetch_for_strangers(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, _ = targets
    stranger = httpx.Client(base_url=str(service.base_url), trust_env=False, timeout=10.0)
    with stranger:
        r = stranger.post(
            "/sandbox/upsampler/api/v1/smart-upscale",
            headers={"Authorization": "Bearer anything"},
            json={
                "input": {"imageUrl": f"{canary.private}/a.png", "upscaleFactor": 2},
                "webhook": f"{canary.private}/hook",
            },
        )
        assert r.status_code == 401, r.text
        r = stranger.put("/sandbox/faults", json={"corrupt_result": 1})
        assert r.status_code == 401, r.text


def test_the_fotor_account_webhook_cannot_be_pointed_at_a_private_address(
    service: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    """Even with the API token, the sandbox's webhook is sent through the guard."""
    canary, _ = targets
    before = service.get("/sandbox/fotor/webhook").json()["url"]
    try:
        r = service.put("/sandbox/fotor/webhook", json={"url": f"{canary.private}/hook"})
        assert r.status_code == 200
        r = service.post("/v1/jobs", json={"provider": "fotor", "scale": 2, "image": IMAGE_B64})
        assert r.status_code == 202, r.text
        # The callback never arrives; polling finishes the job.
        assert wait_settled(service, r.json()["id"])["state"] == "succeeded"
    finally:
        service.put("/sandbox/fotor/webhook", json={"url": before})


# -- the standalone sandbox ------------------------------------------------------


@pytest.fixture(scope="module")
def standalone(
    tmp_path_factory: pytest.TempPathFactory, targets: tuple[Canary, Redirector]
) -> Iterator[httpx.Client]:
    """`upscale sandbox` with the redirector's origin allowed; its APIs take any key."""
    _, redirector = targets
    tmp = tmp_path_factory.mktemp("standalone")
    port = free_port()
    env = clean_env(
        UPSCALE_DATA_DIR=str(tmp / "sb"),
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_FETCH_ALLOW_HOSTS=f"127.0.0.1:{redirector.port}",
    )
    with (
        running(tmp, ["sandbox"], env, port=port, health="/sandbox/stats"),
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}/sandbox", timeout=30.0, trust_env=False
        ) as client,
    ):
        yield client


def _hostile_urls(canary: Canary, redirector: Redirector) -> list[str]:
    return [
        f"{canary.private}/a.png",
        f"http://localhost:{canary.loopback_port}/a.png",
        f"http://2130706433:{canary.loopback_port}/a.png",
        redirector.url,
    ]


def _poll(client: httpx.Client, path: str, done: Any, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        body = client.get(path, headers=headers).json()
        if done(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{path} did not finish: {body}")


def test_standalone_upsampler_neither_fetches_nor_calls_back_privately(
    standalone: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, redirector = targets
    auth = {"Authorization": "Bearer anything"}
    for url in _hostile_urls(canary, redirector):
        r = standalone.post(
            "/upsampler/api/v1/smart-upscale",
            headers=auth,
            json={
                "input": {"imageUrl": url, "upscaleFactor": 2},
                "webhook": f"{canary.private}/hook",
            },
        )
        assert r.status_code == 200, r.text
        final = _poll(
            standalone,
            f"/upsampler/api/v1/status/{r.json()['id']}",
            lambda b: b["status"] in {"SUCCESS", "FAILED"},
            auth,
        )
        assert final["status"] == "FAILED", final
        assert MARKER not in str(final) and "HTTP" not in final["error"], final
    time.sleep(1.0)  # the failed jobs' webhooks would go out now


def test_standalone_fotor_does_not_fetch_privately(
    standalone: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, redirector = targets
    auth = {"Authorization": "Bearer anything"}
    for url in _hostile_urls(canary, redirector):
        r = standalone.post(
            "/fotor/v1/aiart/imgupscale",
            headers=auth,
            json={
                "userImageUrl": url,
                "upscaling_resize": 2,
                "max_image_width": 2048,
                "max_image_height": 2048,
            },
        )
        assert r.status_code == 200, r.text
        task_id = r.json()["data"]["taskId"]
        final = _poll(
            standalone,
            f"/fotor/v1/aiart/tasks/{task_id}",
            lambda b: b["data"]["status"] in {1, 2},
            auth,
        )
        assert final["data"]["status"] == 2, final
        assert MARKER not in str(final) and "HTTP" not in final["data"].get("msg", ""), final


def test_standalone_sync_providers_do_not_fetch_privately(
    standalone: httpx.Client, targets: tuple[Canary, Redirector]
) -> None:
    canary, redirector = targets
    for url in _hostile_urls(canary, redirector):
        r = standalone.post(
            "/photio/v1/inference/upscale",
            headers={"x-photio-key": "anything"},
            json={"image": url, "upscale_by": 2},
        )
        assert r.status_code >= 400 or "status_code" in r.text, r.text
        assert MARKER not in r.text and "HTTP" not in r.text, r.text
        r = standalone.post(
            "/artnex/v1/upscale",
            headers={"Authorization": "Bearer anything"},
            json={"image": url, "scale": 2},
        )
        assert r.status_code >= 400, r.text
        assert MARKER not in r.text and "HTTP" not in r.text, r.text
