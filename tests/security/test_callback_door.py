"""The callback fast path (``receiver/callback_door.py``) against the running service,
over real sockets: it answers before the app, so only a real listener shows what a
client on the internet gets.

Every refusal is a 4xx in the error envelope and stores nothing; a body the service
cannot read is stored as sent (the provider is not made to retry it) and parsed off
the request path; nothing a client sends is an ERROR line in the log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import SECRET, Service
from tests.security.standalone import raw_connection, read_until_closed, standalone_service

pytestmark = pytest.mark.e2e

FOTOR_IP = "54.212.95.175"
BODY_TIMEOUT_S = 1.0
MAX_CALLBACK = 64 * 1024
SLACK_S = 4.0

_SIGNER = CallbackSigner((Secret(SECRET),), SystemClock())
UPSAMPLER = f"/callbacks/upsampler/{_SIGNER.for_account('upsampler')}"
FOTOR = f"/callbacks/fotor/{_SIGNER.for_account('fotor')}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with standalone_service(
        tmp_path_factory.mktemp("door"),
        UPSCALE_FOTOR_CALLBACK_IPS=FOTOR_IP,
        UPSCALE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        UPSCALE_MAX_CALLBACK_BYTES=str(MAX_CALLBACK),
        UPSCALE_MAX_HEADER_BYTES="16384",
    ) as svc:
        yield svc


def _deliveries(service: Service) -> list[str]:
    answer = service.client.get("/v1/deliveries", params={"limit": 200})
    assert answer.status_code == 200, answer.text
    return [d["id"] for d in answer.json()["deliveries"]]


@pytest.fixture
def nothing_stored(service: Service) -> Iterator[None]:
    before = _deliveries(service)
    yield
    time.sleep(0.2)
    assert _deliveries(service) == before


@pytest.fixture(autouse=True)
def no_error_logged(service: Service) -> Iterator[None]:
    start = len(service.proc.log_path.read_bytes())
    yield
    time.sleep(0.2)
    logged = service.proc.log_path.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def _exchange(
    service: Service, data: bytes, limit_s: float = SLACK_S
) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(service) as sock:
        # Refused before everything was sent: the answer is still there to read.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        answer, _ = read_until_closed(sock, limit_s)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return status, headers, body


def _assert_envelope(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    code: str = error["code"]
    return code


def test_a_declared_length_over_the_cap_is_413_before_the_body(
    service: Service, nothing_stored: None
) -> None:
    data = _request("POST", UPSAMPLER, {"Content-Length": str(10**12)})
    status, headers, body = _exchange(service, data)
    assert _assert_envelope(status, headers, body, 413) == "payload_too_large"


def test_a_chunked_body_over_the_cap_is_413(service: Service, nothing_stored: None) -> None:
    chunk = b"%x\r\n%s\r\n" % (MAX_CALLBACK // 4, b"a" * (MAX_CALLBACK // 4))
    data = _request("POST", UPSAMPLER, {"Transfer-Encoding": "chunked"}) + chunk * 6 + b"0\r\n\r\n"
    status, headers, body = _exchange(service, data)
    assert _assert_envelope(status, headers, body, 413) == "payload_too_large"


@pytest.mark.parametrize("declared", [100, 10_000])
def test_a_body_shorter_than_declared_gets_408_at_the_deadline(
    service: Service, nothing_stored: None, declared: int
) -> None:
    data = _request("POST", UPSAMPLER, {"Content-Length": str(declared)}, b'{"id": "')
    started = time.monotonic()
    status, headers, body = _exchange(service, data, BODY_TIMEOUT_S + SLACK_S)
    assert _assert_envelope(status, headers, body, 408) == "request_timeout"
    assert time.monotonic() - started >= BODY_TIMEOUT_S * 0.9


def test_a_chunked_body_that_never_ends_gets_408(service: Service, nothing_stored: None) -> None:
    data = _request("POST", UPSAMPLER, {"Transfer-Encoding": "chunked"}) + b'4\r\n{"a"\r\n'
    status, headers, body = _exchange(service, data, BODY_TIMEOUT_S + SLACK_S)
    assert _assert_envelope(status, headers, body, 408) == "request_timeout"


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/nope/abc",
        "/callbacks/upsampler/not-a-token",
        "/callbacks/upsampler/" + "a" * 12_000,
        "/callbacks/upsampler/%ff%fe%00",
        FOTOR.replace("/fotor/", "/upsampler/"),  # another provider's token
        # An encoded slash is a slash to the server (and to the route table alike):
        # inside a token it makes a third segment.
        UPSAMPLER[:-4] + "%2F" + UPSAMPLER[-3:],
        "/callbacks/upsampler/../../v1/jobs",
        "/callbacks/../v1/jobs",
        "/callbacks/%2e%2e/v1/jobs",
        "/callbacks/upsampler",
        "/callbacks/",
    ],
)
def test_an_odd_callback_path_is_a_bare_404(
    service: Service, nothing_stored: None, path: str
) -> None:
    data = _request(
        "POST", path, {"Content-Length": "2", "Content-Type": "application/json"}, b"{}"
    )
    status, headers, body = _exchange(service, data)
    assert _assert_envelope(status, headers, body, 404) == "not_found"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_on_a_callback_url_are_405_naming_post(
    service: Service, nothing_stored: None, method: str
) -> None:
    status, headers, body = _exchange(service, _request(method, UPSAMPLER, {}))
    assert _assert_envelope(status, headers, body, 405) == "method_not_allowed"
    assert headers["allow"] == "POST"


def test_head_on_a_callback_url_is_405_without_a_body(
    service: Service, nothing_stored: None
) -> None:
    status, headers, body = _exchange(service, _request("HEAD", UPSAMPLER, {}))
    assert (status, body) == (405, b"")
    assert headers["allow"] == "POST"


def test_huge_headers_on_a_callback_are_431(service: Service, nothing_stored: None) -> None:
    data = _request("POST", UPSAMPLER, {"X-Filler": "a" * 40_000, "Content-Length": "2"}, b"{}")
    status, headers, body = _exchange(service, data)
    assert _assert_envelope(status, headers, body, 431) == "headers_too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00\x01\x80binary",
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        b'{"id": "\xc3\x28"}',
    ],
)
def test_a_binary_body_is_stored_as_sent_and_filed_dead(service: Service, body: bytes) -> None:
    data = _request(
        "POST",
        UPSAMPLER,
        {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"},
        body,
    )
    status, _, answer = _exchange(service, data)
    assert status == 200, answer
    delivery_id = json.loads(answer)["delivery"]
    deadline = time.monotonic() + 10
    while True:
        shown = service.client.get(f"/v1/deliveries/{delivery_id}").json()
        if shown["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert shown["status"] == "dead", shown
    assert shown["error"].startswith("unparseable"), shown


def test_forwarded_for_is_not_believed_and_the_peer_is_the_real_one(service: Service) -> None:
    body = b'{"id": "x", "status": "SUCCESS"}'
    headers = {
        "Content-Length": str(len(body)),
        "Content-Type": "application/json",
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
    }
    status, _, answer = _exchange(service, _request("POST", UPSAMPLER, headers, body))
    assert status == 200, answer
    shown = service.client.get(f"/v1/deliveries/{json.loads(answer)['delivery']}").json()
    assert shown["headers"]["x-peer-address"] == "127.0.0.1"


@pytest.mark.parametrize(
    "forwarded",
    [
        {"X-Forwarded-For": FOTOR_IP},
        {"X-Forwarded-For": f"{FOTOR_IP}, {FOTOR_IP}"},
        {"X-Real-IP": FOTOR_IP, "Forwarded": f"for={FOTOR_IP}"},
    ],
)
def test_the_fotor_source_list_cannot_be_passed_with_forwarded_headers(
    service: Service, nothing_stored: None, forwarded: dict[str, str]
) -> None:
    body = b'{"task_id": "t1", "status": 1}'
    headers = {"Content-Length": str(len(body)), "Content-Type": "application/json", **forwarded}
    status, headers_, answer = _exchange(service, _request("POST", FOTOR, headers, body))
    assert _assert_envelope(status, headers_, answer, 403) == "forbidden_source"


def test_several_forwarded_lines_do_not_pass_the_source_list(
    service: Service, nothing_stored: None
) -> None:
    body = b"{}"
    data = (
        f"POST {FOTOR} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"X-Forwarded-For: {FOTOR_IP}\r\nX-Forwarded-For: {FOTOR_IP}\r\n"
        "Content-Length: 2\r\n\r\n"
    ).encode() + body
    status, headers, answer = _exchange(service, data)
    assert _assert_envelope(status, headers, answer, 403) == "forbidden_source"


def test_the_service_still_answers(service: Service) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=5):
        pass
    assert service.client.get("/healthz").status_code == 200
