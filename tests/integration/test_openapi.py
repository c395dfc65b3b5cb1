"""The OpenAPI document matches the routes the app really serves."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from tests.conftest import AppFactory

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _served(app: Starlette) -> dict[str, set[str]]:
    served: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route), route
        methods = {m.lower() for m in route.methods or ()}
        if "get" in methods:
            methods.discard("head")  # Starlette adds HEAD to every GET route
        served.setdefault(route.path, set()).update(methods)
    return served


def _documented(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {m for m in item if m in HTTP_METHODS} for path, item in document["paths"].items()
    }


async def test_document_and_routes_agree(app_factory: AppFactory) -> None:
    async with app_factory() as (app, _, client):
        answer = await client.get("/openapi.json")
        assert answer.status_code == 200
        document = answer.json()
        assert str(document["openapi"]).startswith("3.1")
        served = _served(app)
        documented = _documented(document)
        assert served, "the app has routes"
        missing = {p: m - documented.get(p, set()) for p, m in served.items()}
        assert {p: m for p, m in missing.items() if m} == {}, "served but not documented"
        extra = {p: m - served.get(p, set()) for p, m in documented.items()}
        assert {p: m for p, m in extra.items() if m} == {}, "documented but not served"


async def test_document_is_served_without_a_token(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.get("/openapi.json", headers={"Authorization": ""})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")


async def test_every_reference_resolves(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        document = (await client.get("/openapi.json")).json()
        refs: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    refs.append(ref)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(document)
        assert refs
        for ref in refs:
            assert ref.startswith("#/")
            target: Any = document
            for part in ref[2:].split("/"):
                assert isinstance(target, dict) and part in target, ref
                target = target[part]


async def test_path_parameters_are_declared(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        document = (await client.get("/openapi.json")).json()
        for path, item in document["paths"].items():
            names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                declared = {
                    p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"
                }
                assert declared == names, (path, method)


async def test_documented_job_shape_matches_a_created_job(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        document = (await client.get("/openapi.json")).json()
        schema = document["components"]["schemas"]["Job"]
        created = await client.post(
            "/v1/jobs", json={"provider": "upsampler", "image": "https://example.test/a.png"}
        )
        assert created.status_code == 202
        job = created.json()
        assert set(schema["required"]) <= set(job)
        assert set(job) <= set(schema["properties"])
        assert job["state"] in schema["properties"]["state"]["enum"]


@pytest.mark.parametrize("field", ["provider", "image"])
async def test_create_job_required_fields_are_enforced(app_factory: AppFactory, field: str) -> None:
    async with app_factory() as (_, _, client):
        document = (await client.get("/openapi.json")).json()
        required = document["components"]["schemas"]["CreateJob"]["required"]
        assert field in required
        body = {"provider": "upsampler", "image": "https://example.test/a.png"}
        del body[field]
        answer = await client.post("/v1/jobs", json=body)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        assert field in answer.json()["error"]["message"]
        assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def test_documented_provider_enum_matches_the_configured_providers(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, runtime, client):
        document = (await client.get("/openapi.json")).json()
        enum = document["components"]["schemas"]["CreateJob"]["properties"]["provider"]["enum"]
        assert sorted(enum) == sorted(runtime.providers)
