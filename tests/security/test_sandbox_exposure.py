"""Where the sandbox answers, and to whom, on a running service.

On the README's deployment example (bound to every address, an https public URL,
one provider key) the sandbox is not mounted at all and keyless providers are not
offered; on the zero-configuration quickstart (127.0.0.1) it is mounted, but its
provider APIs take only the service's derived key and its control routes only the
API token. The standalone sandbox's control routes need the token too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.common.settings import load_settings
from orchestrator.security.bootstrap_secrets import signing_keys
from orchestrator.service.runtime import sandbox_api_key
from tests.e2e.harness import free_port
from tests.security.canary import PNG, SECRET, TOKEN, clean_env, running, wait_settled

pytestmark = pytest.mark.e2e

IMAGE_B64 = base64.b64encode(PNG).decode()
SANDBOX_PROVIDER_CALLS = [
    ("POST", "/sandbox/upsampler/api/v1/smart-upscale", "authorization", "Bearer "),
    ("POST", "/sandbox/fotor/v1/aiart/imgupscale", "authorization", "Bearer "),
    ("POST", "/sandbox/fotor/v1/aiart/replacer", "authorization", "Bearer "),
    ("POST", "/sandbox/photio/v1/inference/upscale", "x-photio-key", ""),
    ("POST", "/sandbox/artnex/v1/upscale", "authorization", "Bearer "),
]
CONTROL_CALLS = [
    ("GET", "/sandbox/faults", None),
    ("PUT", "/sandbox/faults", {"corrupt_result": 1}),
    ("DELETE", "/sandbox/faults", None),
    ("PUT", "/sandbox/faults/upsampler", {"corrupt_result": 1}),
    ("PUT", "/sandbox/faults/fotor", {"submit_500": 1}),
    ("PUT", "/sandbox/faults/nope", {"submit_500": 1}),
    ("GET", "/sandbox/stats", None),
    ("DELETE", "/sandbox/stats", None),
    ("GET", "/sandbox/fotor/webhook", None),
    ("PUT", "/sandbox/fotor/webhook", {"url": "https://attacker.example/hook"}),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """The README's one-process deployment: --host 0.0.0.0, https public URL, one key."""
    tmp = tmp_path_factory.mktemp("deployment")
    port = free_port()
    env = clean_env(
        UPSCALE_PUBLIC_URL="https://upscale.example.com",
        UPSCALE_UPSAMPLER_API_KEY="a-real-key",
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_SECRET_KEYS=SECRET,
        UPSCALE_DATA_DIR=str(tmp / "data"),
    )
    with (
        running(tmp, ["serve", "--host", "0.0.0.0"], env, port=port, health="/healthz") as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False) as c,
    ):
        yield c, proc.log_path


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str, str]]:
    """`upscale serve` with no configuration at all: 127.0.0.1, generated secrets."""
    tmp = tmp_path_factory.mktemp("quickstart")
    port = free_port()
    data = tmp / "data"
    env = clean_env(UPSCALE_DATA_DIR=str(data))
    with (
        running(tmp, ["serve"], env, port=port, health="/healthz") as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False) as c,
    ):
        token = (data / "api_token").read_text().strip()
        yield c, token, proc.log_path.read_text()


def test_the_deployment_example_has_no_sandbox(deployment: tuple[httpx.Client, Path]) -> None:
    client, _ = deployment
    for method, path, header, prefix in SANDBOX_PROVIDER_CALLS:
        r = client.request(
            method,
            path,
            headers={header: f"{prefix}anything"},
            json={"input": {"imageUrl": "http://127.0.0.2:9/a.png"}, "webhook": "http://x/y"},
        )
        assert r.status_code == 404, (path, r.status_code)
    for method, path, body in CONTROL_CALLS:
        r = client.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code)
        # Not with the API token either: there is nothing there.
        r = client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404, (method, path, r.status_code)


def test_the_deployment_example_local_provider_takes_only_the_derived_key(
    deployment: tuple[httpx.Client, Path],
) -> None:
    """The local provider's API shares the public listener (/local): a stranger, or
    the API token, gets 401 before anything is read or fetched."""
    client, _ = deployment
    body = {"image_url": "http://127.0.0.2:9/a.png", "webhook": "http://127.0.0.2:9/hook"}
    for headers in ({}, {"Authorization": "Bearer anything"}, {"Authorization": f"Bearer {TOKEN}"}):
        r = client.post("/local/api/v1/upscale", json=body, headers=headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        r = client.get("/local/api/v1/jobs/0123456789abcdef", headers=headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)


def test_the_deployment_example_offers_keyless_providers_nowhere(
    deployment: tuple[httpx.Client, Path],
) -> None:
    client, log_path = deployment
    auth = {"Authorization": f"Bearer {TOKEN}"}
    listed = {p["name"]: p for p in client.get("/v1/providers", headers=auth).json()["providers"]}
    assert listed["upsampler"]["mode"] == "live"
    assert listed["local"]["mode"] == "live"
    for name in ("fotor", "photio", "artnex"):
        assert listed[name]["mode"] == "unavailable"
        assert f"UPSCALE_{name.upper()}_API_KEY" in listed[name]["reason"]
        r = client.post(
            "/v1/jobs", headers=auth, json={"provider": name, "scale": 2, "image": IMAGE_B64}
        )
        assert r.status_code == 400, r.text
        assert f"UPSCALE_{name.upper()}_API_KEY" in r.json()["error"]["message"]
    log = log_path.read_text()
    assert "sandbox.not_mounted" in log and "0.0.0.0" in log, log


def test_the_deployment_example_refuses_private_subscriptions(
    deployment: tuple[httpx.Client, Path],
) -> None:
    client, _ = deployment
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/v1/subscriptions", headers=auth, json={"url": "http://127.0.0.2:9/hook"})
    assert r.status_code == 400, r.text
    r = client.post(
        "/v1/jobs",
        headers=auth,
        json={"provider": "local", "scale": 2, "image": "http://127.0.0.2:9/a.png"},
    )
    assert r.status_code == 400, r.text


def test_the_quickstart_mounts_the_sandbox_and_says_why(
    quickstart: tuple[httpx.Client, str, str],
) -> None:
    client, token, log = quickstart
    assert "sandbox.mounted" in log and "127.0.0.1" in log, log
    listed = client.get("/v1/providers", headers={"Authorization": f"Bearer {token}"}).json()
    modes = {p["name"]: p["mode"] for p in listed["providers"]}
    assert modes == {
        "upsampler": "sandbox",
        "fotor": "sandbox",
        "photio": "sandbox",
        "artnex": "sandbox",
        "local": "live",
    }


def test_the_mounted_sandbox_takes_only_the_derived_key(
    quickstart: tuple[httpx.Client, str, str], tmp_path: Path
) -> None:
    client, token, _ = quickstart
    for key in ("anything", "sandbox", token):
        for method, path, header, prefix in SANDBOX_PROVIDER_CALLS:
            r = client.request(method, path, headers={header: f"{prefix}{key}"}, json={})
            assert r.status_code == 401, (path, key, r.status_code, r.text)


def test_the_mounted_sandbox_control_routes_need_the_api_token(
    quickstart: tuple[httpx.Client, str, str],
) -> None:
    client, token, _ = quickstart
    for method, path, body in CONTROL_CALLS:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code)
    faults = client.get("/sandbox/faults", headers={"Authorization": f"Bearer {token}"})
    assert faults.status_code == 200
    assert faults.json()["corrupt_result"] == 0  # the refused PUT changed nothing
    # Nor did the refused per-provider PUTs: an upsampler job is not corrupted.
    _assert_an_upscale_succeeds(client, token)
    webhook = client.get("/sandbox/fotor/webhook", headers={"Authorization": f"Bearer {token}"})
    assert webhook.status_code == 200 and webhook.json()["url"].startswith("http://127.0.0.1")


def test_the_quickstart_still_upscales_through_the_sandbox(
    quickstart: tuple[httpx.Client, str, str],
) -> None:
    client, token, _ = quickstart
    _assert_an_upscale_succeeds(client, token)


def test_the_standalone_sandbox_control_routes_need_the_token(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(UPSCALE_DATA_DIR=str(tmp_path / "sb"), UPSCALE_API_TOKENS=TOKEN)
    with (
        running(tmp_path, ["sandbox"], env, port=port, health="/sandbox/stats"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0, trust_env=False) as c,
    ):
        for method, path, body in CONTROL_CALLS:
            assert c.request(method, path, json=body).status_code == 401, (method, path)
        ok = c.get("/sandbox/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


def test_the_derived_key_is_not_a_constant(tmp_path: Path) -> None:
    """Two deployments (two signing keys) never share the sandbox key."""
    one = signing_keys(load_settings({"UPSCALE_SECRET_KEYS": "one"}).secret_keys, tmp_path)
    two = signing_keys(load_settings({"UPSCALE_SECRET_KEYS": "two"}).secret_keys, tmp_path)
    assert sandbox_api_key(one) != sandbox_api_key(two)


def _assert_an_upscale_succeeds(client: httpx.Client, token: str) -> None:
    """An upsampler job submitted with ``token`` goes through the sandbox to success."""
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post(
        "/v1/jobs", headers=auth, json={"provider": "upsampler", "scale": 2, "image": IMAGE_B64}
    )
    assert r.status_code == 202, r.text
    client.headers.update(auth)
    try:
        assert wait_settled(client, r.json()["id"])["state"] == "succeeded"
    finally:
        del client.headers["Authorization"]
