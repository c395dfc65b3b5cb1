"""The public jobs API end to end: the real app, a real SQLite store, no background loops."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.service.runtime import Runtime
from tests.conftest import API_TOKEN, BASE, AppFactory
from tests.factories import make_png

IMAGE_URL = "https://images.example.test/cat.png"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _inputs(runtime: Runtime) -> list[Path]:
    root = runtime.settings.data_dir / "inputs"
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_file())


async def _job_ids(client: httpx.AsyncClient) -> list[str]:
    answer = await client.get("/v1/jobs")
    assert answer.status_code == 200
    return [job["id"] for job in answer.json()["jobs"]]


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "upsampler", "image": IMAGE_URL, **fields}
    answer = await client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def _path_of(url: str) -> str:
    assert url.startswith(BASE)
    return url.removeprefix(BASE)


# --- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-the-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {API_TOKEN}"}, id="basic-scheme"),
        pytest.param({"Authorization": API_TOKEN}, id="no-scheme"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
    ],
)
async def test_jobs_api_refuses_requests_without_a_valid_bearer_token(
    app_factory: AppFactory, headers: dict[str, str]
) -> None:
    async with app_factory() as (_, _, client):
        client.headers.pop("Authorization")
        for method, path in [
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/job_x"),
            ("DELETE", "/v1/jobs/job_x"),
            ("GET", "/v1/jobs/job_x/history"),
            ("GET", "/v1/jobs/job_x/result"),
        ]:
            kwargs: dict[str, Any] = {"headers": headers}
            if method == "POST":
                kwargs["json"] = {"provider": "upsampler", "image": IMAGE_URL}
            answer = await client.request(method, path, **kwargs)
            assert answer.status_code == 401, (method, path)
            error = answer.json()["error"]
            assert error["code"] == "unauthorized"
            assert isinstance(error["message"], str) and error["message"]
        # The refused POSTs created nothing.
        client.headers["Authorization"] = f"Bearer {API_TOKEN}"
        assert await _job_ids(client) == []


async def test_the_configured_token_is_accepted_with_any_scheme_case(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.get("/v1/jobs", headers={"Authorization": f"bearer {API_TOKEN}"})
        assert answer.status_code == 200


# --- creating jobs ---------------------------------------------------------------------


async def test_create_job_from_an_image_url(app_factory: AppFactory) -> None:
    metadata = {"sku": "A-1", "tags": ["x", "y"], "nested": {"deep": [1, 2.5, None, True]}}
    async with app_factory() as (_, runtime, client):
        answer = await client.post(
            "/v1/jobs",
            json={
                "provider": "upsampler",
                "image": IMAGE_URL,
                "scale": 4,
                "options": {"endpoint": "smart", "detail": 7},
                "metadata": metadata,
            },
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["id"].startswith("job_")
        assert job["provider"] == "upsampler"
        assert job["state"] == "queued"
        assert job["provider_job_id"] is None
        assert job["failure"] is None
        assert job["result"] is None
        assert job["metadata"] == metadata
        assert job["scale"] == 4
        assert job["options"] == {"endpoint": "smart", "detail": 7}
        for stamp in ("created_at", "updated_at"):
            assert isinstance(job[stamp], str) and job[stamp].endswith("Z")
        # The job is stored with the URL as its input, and no uploaded file.
        stored = await runtime.store.get_job(job["id"])
        assert stored is not None
        assert stored.input_url == IMAGE_URL
        assert stored.input_key is None
        assert _inputs(runtime) == []
        # The same shape comes back from GET.
        fetched = await client.get(f"/v1/jobs/{job['id']}")
        assert fetched.status_code == 200
        assert fetched.json() == job


async def test_create_job_with_http_url_and_default_scale(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _create(client, image="http://images.example.test/a.jpg")
        assert job["scale"] == 2
        assert job["options"] == {"endpoint": "precise"}
        assert job["metadata"] is None


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda data: f"data:image/png;base64,{_b64(data)}", id="data-uri"),
        pytest.param(_b64, id="bare-base64"),
    ],
)
async def test_create_job_from_base64_stores_the_input(
    app_factory: AppFactory, encode: Any
) -> None:
    png = make_png(20, 10)
    async with app_factory() as (_, runtime, client):
        answer = await client.post("/v1/jobs", json={"provider": "upsampler", "image": encode(png)})
        assert answer.status_code == 202, answer.text
        job = await runtime.store.get_job(answer.json()["id"])
        assert job is not None
        assert job.input_url is None
        assert job.input_key is not None
        url = runtime.orchestrator.input_url(job)
        assert url is not None
        # The input URL needs no API token: it is for the provider.
        served = await client.get(_path_of(url), headers={"Authorization": ""})
        assert served.status_code == 200
        assert served.content == png
        assert served.headers["content-type"] == "image/png"
        assert len(_inputs(runtime)) == 1


async def test_create_job_from_a_multipart_upload(app_factory: AppFactory) -> None:
    png = make_png(8, 8)
    async with app_factory() as (_, runtime, client):
        answer = await client.post(
            "/v1/jobs",
            files={"image": ("photo.png", png, "image/png")},
            data={
                "provider": "upsampler",
                "scale": "2",
                "options": '{"endpoint": "smart"}',
                "metadata": '{"a": 1}',
            },
        )
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["state"] == "queued"
        assert body["scale"] == 2
        assert body["options"] == {"endpoint": "smart"}
        assert body["metadata"] == {"a": 1}
        job = await runtime.store.get_job(body["id"])
        assert job is not None and job.input_key is not None
        url = runtime.orchestrator.input_url(job)
        assert url is not None
        served = await client.get(_path_of(url))
        assert served.status_code == 200
        assert served.content == png
        assert served.headers["content-type"] == "image/png"


# --- rejected requests -----------------------------------------------------------------

PNG_B64 = _b64(make_png())

BAD_JSON_BODIES = [
    pytest.param({"provider": "nope", "image": IMAGE_URL}, "provider", id="unknown-provider"),
    pytest.param({"image": IMAGE_URL}, "provider", id="missing-provider"),
    pytest.param({"provider": "upsampler"}, "image is required", id="missing-image"),
    pytest.param({"provider": "upsampler", "image": "  "}, "image is required", id="blank-image"),
    pytest.param(
        {"provider": "upsampler", "image": "ftp://example.test/a.png"},
        "http or https",
        id="ftp-url",
    ),
    pytest.param(
        {"provider": "upsampler", "image": "file:///etc/passwd"}, "http or https", id="file-url"
    ),
    pytest.param(
        {"provider": "upsampler", "image": _b64(b"definitely not an image, just text")},
        "not a PNG",
        id="non-image-bytes",
    ),
    pytest.param(
        {"provider": "upsampler", "image": "not base64 at all!!"}, "base64", id="invalid-base64"
    ),
    pytest.param({"provider": "upsampler", "image": IMAGE_URL, "scale": 0}, "scale", id="scale-0"),
    pytest.param(
        {"provider": "upsampler", "image": IMAGE_URL, "scale": 17}, "scale", id="scale-17"
    ),
    pytest.param(
        {"provider": "upsampler", "image": IMAGE_URL, "scale": "abc"}, "scale", id="scale-str"
    ),
    pytest.param(
        {"provider": "upsampler", "image": IMAGE_URL, "scale": True}, "scale", id="scale-bool"
    ),
    pytest.param(
        {"provider": "upsampler", "image": IMAGE_URL, "options": ["smart"]},
        "options must be a JSON object",
        id="options-list",
    ),
    pytest.param(
        {"provider": "upsampler", "image": IMAGE_URL, "options": {"colour": "red"}},
        "unknown option 'colour'",
        id="unknown-option",
    ),
    pytest.param(
        {
            "provider": "upsampler",
            "image": IMAGE_URL,
            "options": {"endpoint": "smart", "detail": 11},
        },
        "'detail' must be an integer from 0 to 10",
        id="detail-out-of-range",
    ),
    pytest.param(
        {"provider": "upsampler", "image": PNG_B64, "options": {"endpoint": "turbo"}},
        "endpoint",
        id="unknown-endpoint-with-upload",
    ),
    pytest.param(["provider", "upsampler"], "JSON object", id="body-not-object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_JSON_BODIES)
async def test_invalid_json_requests_are_rejected_with_a_clear_message(
    app_factory: AppFactory, body: Any, message: str
) -> None:
    async with app_factory() as (_, runtime, client):
        answer = await client.post("/v1/jobs", json=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_request"
        assert message in error["message"]
        assert await _job_ids(client) == []
        assert _inputs(runtime) == []


async def test_a_body_that_is_not_json_is_rejected(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs", content=b"provider=upsampler", headers={"Content-Type": "text/plain"}
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        assert "must be JSON" in answer.json()["error"]["message"]
        assert await _job_ids(client) == []


BAD_FORMS = [
    pytest.param(
        {"provider": "upsampler"},
        {"other": ("a.png", make_png(), "image/png")},
        "'image'",
        id="no-image-part",
    ),
    pytest.param(
        {"provider": "upsampler", "metadata": "{not json"},
        {"image": ("a.png", make_png(), "image/png")},
        "'metadata' must be JSON",
        id="metadata-not-json",
    ),
    pytest.param(
        {"provider": "upsampler", "options": "endpoint=smart"},
        {"image": ("a.png", make_png(), "image/png")},
        "'options' must be JSON",
        id="options-not-json",
    ),
    pytest.param(
        {"provider": "upsampler", "scale": "abc"},
        {"image": ("a.png", make_png(), "image/png")},
        "scale must be a number",
        id="scale-not-number",
    ),
    pytest.param(
        {"provider": "nope"},
        {"image": ("a.png", make_png(), "image/png")},
        "provider must be one of",
        id="unknown-provider",
    ),
    pytest.param(
        {"provider": "upsampler"},
        {"image": ("a.txt", b"hello, plain text", "text/plain")},
        "not a PNG",
        id="not-an-image",
    ),
    pytest.param(
        {"provider": "upsampler"},
        {"image": ("a.png", b"", "image/png")},
        "empty",
        id="empty-file",
    ),
]


@pytest.mark.parametrize(("data", "files", "message"), BAD_FORMS)
async def test_invalid_multipart_requests_are_rejected_with_a_clear_message(
    app_factory: AppFactory, data: dict[str, str], files: dict[str, Any], message: str
) -> None:
    async with app_factory() as (_, runtime, client):
        answer = await client.post("/v1/jobs", data=data, files=files)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_request"
        assert message in error["message"]
        assert await _job_ids(client) == []
        assert _inputs(runtime) == []


async def test_json_upload_over_the_cap_is_413(app_factory: AppFactory) -> None:
    big = make_png(64, 64) + b"\0" * 2000  # a valid PNG signature, well over 1000 bytes
    async with app_factory(UPSCALE_MAX_UPLOAD_BYTES="1000") as (_, runtime, client):
        answer = await client.post("/v1/jobs", json={"provider": "upsampler", "image": _b64(big)})
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert await _job_ids(client) == []
        assert _inputs(runtime) == []
        # Just under the cap is accepted.
        small = make_png(4, 4)
        assert len(small) < 1000
        ok = await client.post("/v1/jobs", json={"provider": "upsampler", "image": _b64(small)})
        assert ok.status_code == 202


async def test_json_body_far_over_the_cap_is_413_before_parsing(app_factory: AppFactory) -> None:
    async with app_factory(UPSCALE_MAX_UPLOAD_BYTES="1000") as (_, _, client):
        huge = "A" * (200 * 1024)
        answer = await client.post("/v1/jobs", json={"provider": "upsampler", "image": huge})
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert await _job_ids(client) == []


@pytest.mark.parametrize("size", [2000, 200 * 1024], ids=["over-image-cap", "over-body-cap"])
async def test_multipart_upload_over_the_cap_is_413(app_factory: AppFactory, size: int) -> None:
    png = make_png(4, 4)
    big = png + b"\0" * (size - len(png))
    async with app_factory(UPSCALE_MAX_UPLOAD_BYTES="1000") as (_, runtime, client):
        answer = await client.post(
            "/v1/jobs",
            data={"provider": "upsampler"},
            files={"image": ("big.png", big, "image/png")},
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert await _job_ids(client) == []
        assert _inputs(runtime) == []


# --- idempotency -----------------------------------------------------------------------


async def test_same_idempotency_key_and_body_returns_the_first_job(
    app_factory: AppFactory,
) -> None:
    body = {"provider": "upsampler", "image": IMAGE_URL, "metadata": {"order": 42}}
    async with app_factory() as (_, _, client):
        first = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
        assert first.status_code == 202
        second = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]
        assert await _job_ids(client) == [first.json()["id"]]


async def test_same_idempotency_key_with_another_body_is_409(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        first = await client.post(
            "/v1/jobs",
            json={"provider": "upsampler", "image": IMAGE_URL},
            headers={"Idempotency-Key": "k-1"},
        )
        assert first.status_code == 202
        other = await client.post(
            "/v1/jobs",
            json={"provider": "upsampler", "image": IMAGE_URL, "scale": 3},
            headers={"Idempotency-Key": "k-1"},
        )
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_conflict"
        assert await _job_ids(client) == [first.json()["id"]]


@pytest.mark.parametrize(
    "key", ["k" * 256, "k" * 300, "has space", "tab\there", "ünïcode"], ids=repr
)
async def test_invalid_idempotency_key_is_400(app_factory: AppFactory, key: str) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs",
            json={"provider": "upsampler", "image": IMAGE_URL},
            headers={"Idempotency-Key": key.encode("utf-8")},
        )
        assert answer.status_code == 400
        assert "Idempotency-Key" in answer.json()["error"]["message"]
        assert await _job_ids(client) == []


async def test_longest_valid_idempotency_key_is_accepted(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs",
            json={"provider": "upsampler", "image": IMAGE_URL},
            headers={"Idempotency-Key": "k" * 255},
        )
        assert answer.status_code == 202


async def test_repeated_upload_with_one_key_keeps_one_input_file(
    app_factory: AppFactory,
) -> None:
    png = make_png(10, 10)
    async with app_factory() as (_, runtime, client):
        ids = []
        for _ in range(3):
            answer = await client.post(
                "/v1/jobs",
                data={"provider": "upsampler", "metadata": '{"a": 1}'},
                files={"image": ("a.png", png, "image/png")},
                headers={"Idempotency-Key": "upload-1"},
            )
            assert answer.status_code in (200, 202)
            ids.append(answer.json()["id"])
        assert len(set(ids)) == 1
        assert await _job_ids(client) == ids[:1]
        files = _inputs(runtime)
        assert len(files) == 1
        assert files[0].read_bytes() == png
        job = await runtime.store.get_job(ids[0])
        assert job is not None and files[0].name == job.input_key


async def test_repeated_base64_upload_with_one_key_keeps_one_input_file(
    app_factory: AppFactory,
) -> None:
    png = make_png(6, 6)
    body = {"provider": "upsampler", "image": _b64(png)}
    async with app_factory() as (_, runtime, client):
        first = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "b64"})
        second = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "b64"})
        assert (first.status_code, second.status_code) == (202, 200)
        assert first.json()["id"] == second.json()["id"]
        assert len(_inputs(runtime)) == 1


# --- reading jobs ----------------------------------------------------------------------


async def test_unknown_job_is_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        for path in ("/v1/jobs/job_nope", "/v1/jobs/job_nope/history", "/v1/jobs/job_nope/result"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
        answer = await client.delete("/v1/jobs/job_nope")
        assert answer.status_code == 404


async def test_list_filters_by_state_and_provider(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        kept = await _create(client)
        gone = await _create(client)
        assert (await client.delete(f"/v1/jobs/{gone['id']}")).status_code == 200

        queued = await client.get("/v1/jobs", params={"state": "queued"})
        assert [j["id"] for j in queued.json()["jobs"]] == [kept["id"]]
        cancelled = await client.get("/v1/jobs", params={"state": "cancelled"})
        assert [j["id"] for j in cancelled.json()["jobs"]] == [gone["id"]]
        assert (await client.get("/v1/jobs", params={"state": "failed"})).json()["jobs"] == []

        by_provider = await client.get("/v1/jobs", params={"provider": "upsampler"})
        assert {j["id"] for j in by_provider.json()["jobs"]} == {kept["id"], gone["id"]}
        both = await client.get("/v1/jobs", params={"provider": "upsampler", "state": "queued"})
        assert [j["id"] for j in both.json()["jobs"]] == [kept["id"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "done"}, "unknown state"),
        ({"provider": "nope"}, "unknown provider"),
        ({"limit": "ten"}, "limit"),
    ],
)
async def test_list_rejects_bad_filters(
    app_factory: AppFactory, params: dict[str, str], message: str
) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.get("/v1/jobs", params=params)
        assert answer.status_code == 400
        assert message in answer.json()["error"]["message"]


async def test_list_paginates_newest_first(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        created = []
        for i in range(5):
            created.append((await _create(client, metadata={"i": i}))["id"])
            # Ids order by millisecond: keep creations in distinct milliseconds.
            await asyncio.sleep(0.003)
        seen: list[str] = []
        pages = 0
        params: dict[str, str] = {"limit": "2"}
        while True:
            page = (await client.get("/v1/jobs", params=params)).json()
            pages += 1
            assert len(page["jobs"]) <= 2
            seen.extend(j["id"] for j in page["jobs"])
            if page["next"] is None:
                break
            assert page["next"] == page["jobs"][-1]["id"]
            params = {"limit": "2", "after": page["next"]}
            assert pages < 10
        assert pages == 3
        assert seen == list(reversed(created))
        # Without a limit the whole list comes in one page, same order.
        whole = (await client.get("/v1/jobs")).json()
        assert [j["id"] for j in whole["jobs"]] == seen
        assert whole["next"] is None


async def test_exactly_one_full_page_has_no_next(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        await _create(client)
        await _create(client)
        page = (await client.get("/v1/jobs", params={"limit": "2"})).json()
        assert len(page["jobs"]) == 2
        assert page["next"] is None


async def test_result_is_404_before_a_result_exists(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _create(client)
        answer = await client.get(f"/v1/jobs/{job['id']}/result")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


# --- cancelling ------------------------------------------------------------------------


async def test_cancel_a_queued_job(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _create(client)
        answer = await client.delete(f"/v1/jobs/{job['id']}")
        assert answer.status_code == 200
        assert answer.json()["id"] == job["id"]
        assert answer.json()["state"] == "cancelled"
        assert (await client.get(f"/v1/jobs/{job['id']}")).json()["state"] == "cancelled"

        again = await client.delete(f"/v1/jobs/{job['id']}")
        assert again.status_code == 400
        assert "already cancelled" in again.json()["error"]["message"]

        history = await client.get(f"/v1/jobs/{job['id']}/history")
        assert history.status_code == 200
        entries = history.json()["history"]
        assert history.json()["job_id"] == job["id"]
        assert [(e["from"], e["to"]) for e in entries] == [
            (None, "queued"),
            ("queued", "cancelled"),
        ]
        assert entries[-1]["cause"] == "api"


# --- input URLs ------------------------------------------------------------------------


async def test_input_url_refuses_forged_and_expired_tokens(app_factory: AppFactory) -> None:
    png = make_png()
    async with app_factory() as (_, runtime, client):
        answer = await client.post("/v1/jobs", json={"provider": "upsampler", "image": _b64(png)})
        job = await runtime.store.get_job(answer.json()["id"])
        assert job is not None and job.input_key is not None
        good = _path_of(runtime.orchestrator.input_url(job) or "")
        assert (await client.get(good)).status_code == 200

        token = good.removeprefix("/inputs/")
        payload, _, signature = token.rpartition(".")
        forged = f"{payload}.{'A' * len(signature)}"
        for path in (f"/inputs/{forged}", "/inputs/garbage", f"/inputs/{token}x"):
            refused = await client.get(path)
            assert refused.status_code == 404, path
            assert refused.content != png

        expired = runtime.input_signer.sign(job.input_key, expires_at=1_000_000)
        refused = await client.get(f"/inputs/{expired}")
        assert refused.status_code == 404
        assert refused.content != png


async def test_input_url_for_a_signed_but_unknown_key_is_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        future = 4_000_000_000
        for key in ("job_missing.png", "../upscale.db", "x.exe"):
            token = runtime.input_signer.sign(key, expires_at=future)
            answer = await client.get(f"/inputs/{token}")
            assert answer.status_code == 404, key


async def test_conflicting_upload_leaves_no_orphan_input(app_factory: AppFactory) -> None:
    png = make_png()
    async with app_factory() as (_, runtime, client):
        first = await client.post(
            "/v1/jobs",
            files={"image": ("a.png", png, "image/png")},
            data={"provider": "upsampler"},
            headers={"Idempotency-Key": "k1"},
        )
        second = await client.post(
            "/v1/jobs",
            files={"image": ("a.png", png, "image/png")},
            data={"provider": "upsampler", "scale": "3"},
            headers={"Idempotency-Key": "k1"},
        )
        assert (first.status_code, second.status_code) == (202, 409)
        assert len(_inputs(runtime)) == 1
