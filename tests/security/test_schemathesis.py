"""Schemathesis against ``/openapi.json`` of the running service.

The service runs as a real process on 127.0.0.1 (``upscale serve --web-only``, so
nothing it stores is submitted, fetched or delivered: generated URLs never leave
the machine), its providers pointed at the standalone sandbox. Every documented
operation is called with generated data, valid and invalid, and each answer must
be no 5xx (a 503 only with ``Retry-After``) and conform to the document: a
documented status code, content type, headers and body schema.

``UPSCALE_SCHEMATHESIS_EXAMPLES`` sets the examples per operation and mode
(valid data, then invalid; default 150: 300 an operation, about 9,000 requests
in all, about a minute); raise it to run longer. The operations are those of the served
document (a test in tests/integration/test_openapi.py keeps it equal to the
routes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response

from receiver.openapi import DOCUMENT
from tests.e2e.harness import (
    TOKEN,
    Proc,
    Sandbox,
    Service,
    free_port,
    service_env,
    start_sandbox,
)

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("UPSCALE_SCHEMATHESIS_EXAMPLES", "150"))
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# An endless Server-Sent Events stream: there is no answer to check.
ENDLESS = "/v1/events/stream"


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def web_service(
    tmp_path_factory: pytest.TempPathFactory, sandbox_process: Sandbox
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("service")
    port = free_port()
    data_dir = Path(tmp) / "data"
    proc = Proc(
        [*_cli(), "serve", "--port", str(port), "--web-only"],
        service_env(data_dir, sandbox_process, UPSCALE_LOG_LEVEL="WARNING"),
        tmp / f"service-{port}.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    proc.start()
    service = Service(port, data_dir, proc)
    try:
        yield service
    finally:
        service.close()


def _cli() -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli"]


@pytest.fixture(scope="module")
def api_schema(web_service: Service) -> Any:
    loaded = schemathesis.openapi.from_url(f"{web_service.base}/openapi.json")
    return loaded


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 5xx, except a 503 that says when to retry."""
    status = response.status_code
    if status >= 500 and not (status == 503 and "retry-after" in response.headers):
        raise AssertionError(f"{status} answer: {response.content[:300]!r}")
    return None


CHECKS = [
    no_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

OPERATIONS = [
    (path, method.upper(), spec)
    for path, item in DOCUMENT["paths"].items()
    for method, spec in item.items()
    if path != ENDLESS
]


# Operations for which the generator finds no invalid request: their parameters are
# free strings, their bodies any JSON (a bad callback token or query value is still a
# valid request, answered 404 or 400, which the positive mode sends). The last test
# below fails when that stops being true, so this list cannot hide a new case.
NOTHING_INVALID = {
    ("POST", "/callbacks/{provider}/{token}"),
    ("GET", "/inputs/{token}"),
}


def _can_be_invalid(path: str, method: str, spec: dict[str, Any]) -> bool:
    """An operation with no parameter and no body has no invalid request to send."""
    if (method, path) in NOTHING_INVALID:
        return False
    return bool(spec.get("parameters")) or "requestBody" in spec


CASES = [
    pytest.param(path, method, mode, id=f"{method} {path} {mode.value}")
    for path, method, spec in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _can_be_invalid(path, method, spec)
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_every_operation_answers_as_documented(
    api_schema: Any, web_service: Service, path: str, method: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: Case) -> None:
        # The generated token is never the service's: send the real one, so the
        # request reaches the handler (401s are tested elsewhere).
        case.headers = {**(case.headers or {}), **AUTH}
        case.call_and_validate(base_url=web_service.base, checks=CHECKS, timeout=30)

    call()
    assert "Traceback" not in web_service.proc.log(), web_service.proc.log()


@pytest.mark.parametrize(("method", "path"), sorted(NOTHING_INVALID))
def test_operations_said_to_have_no_invalid_request_have_none(
    api_schema: Any, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def generate(case: Case) -> None:
        pass

    with pytest.raises(Unsatisfiable):
        generate()
