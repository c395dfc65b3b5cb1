"""The listener faces the internet: forwarded headers, slow clients and connection counts,
checked against the running service over real sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import SECRET, TOKEN, Service, free_port
from tests.security.canary import clean_env, running
from tests.security.standalone import raw_connection, read_until_closed, standalone_service

FOTOR_IP = "54.212.95.175"
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
# Generous: the machine is shared and busy; what matters is that it happens at all.
SLACK_S = 4.0


def _fotor_callback_path() -> str:
    token = CallbackSigner((Secret(SECRET),), SystemClock()).for_account("fotor")
    return f"/callbacks/fotor/{token}"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with standalone_service(
        tmp_path_factory.mktemp("limited"),
        UPSCALE_FOTOR_CALLBACK_IPS=FOTOR_IP,
        UPSCALE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        UPSCALE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        UPSCALE_MAX_HEADER_BYTES="16384",
        UPSCALE_LIMIT_CONCURRENCY="8",
    ) as service:
        yield service


def test_forwarded_for_from_a_local_hop_does_not_pass_the_callback_allow_list(
    limited: Service,
) -> None:
    # Anything that reaches the port through a local hop (a sidecar, an SSH tunnel)
    # must not become Fotor by saying so, unless that hop is a trusted proxy.
    response = limited.client.post(
        _fotor_callback_path(),
        json={"task_id": "t1", "status": 1},
        headers={"X-Forwarded-For": FOTOR_IP},
    )
    assert response.status_code == 403, response.text


def test_forwarded_for_from_a_trusted_proxy_is_believed_and_the_peer_is_not_forged(
    tmp_path: Path,
) -> None:
    with standalone_service(
        tmp_path,
        UPSCALE_FOTOR_CALLBACK_IPS=FOTOR_IP,
        UPSCALE_TRUSTED_PROXIES="127.0.0.1/32",
    ) as service:
        response = service.client.post(
            _fotor_callback_path(),
            json={"task_id": "t1", "status": 1},
            headers={"X-Forwarded-For": FOTOR_IP},
        )
        assert response.status_code == 200, response.text
        delivery = service.client.get(f"/v1/deliveries/{response.json()['delivery']}").json()
        assert delivery["headers"]["x-peer-address"] == "127.0.0.1"
        assert delivery["headers"]["x-forwarded-for"] == FOTOR_IP


def test_a_connection_that_sends_nothing_is_closed(limited: Service) -> None:
    with raw_connection(limited) as sock:
        _, took = read_until_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert took >= HEADER_TIMEOUT_S * 0.9


def test_headers_sent_one_byte_at_a_time_are_cut_off(limited: Service) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with raw_connection(limited) as sock:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEADER_TIMEOUT_S + SLACK_S:
                break
        if not closed:
            read_until_closed(sock, 1.0)
    assert time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S + 1.0


def test_a_kept_alive_connection_gets_the_same_header_deadline(limited: Service) -> None:
    with raw_connection(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and then nothing more
        _, took = read_until_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert took >= HEADER_TIMEOUT_S * 0.9


def test_oversized_headers_are_refused(limited: Service) -> None:
    answer = _send_oversized_headers(limited, b"GET /healthz")
    assert answer.startswith(b"HTTP/1.1 431")
    body = answer.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_a_header_whose_value_never_ends_is_refused(limited: Service) -> None:
    with raw_connection(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            for _ in range(40):
                sock.sendall(b"a" * 1000)
        except OSError:
            pass
        answer, _ = read_until_closed(sock, SLACK_S)
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_body_that_stops_coming_gets_408(limited: Service) -> None:
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with raw_connection(limited) as sock:
        sock.sendall(head.encode() + b'{"provider": "upsampler", "image": "')
        answer, took = read_until_closed(sock, BODY_TIMEOUT_S + SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took >= BODY_TIMEOUT_S * 0.9


def test_connections_past_the_limit_are_answered_503(limited: Service) -> None:
    answer = _answer_past_the_connection_limit(limited, b"GET /healthz")
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    # Once they are gone, the service answers again.
    time.sleep(0.2)
    assert limited.client.get("/healthz").status_code == 200


def test_a_client_that_disconnects_mid_body_costs_one_debug_line(tmp_path: Path) -> None:
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    )
    with standalone_service(tmp_path, UPSCALE_LOG_LEVEL="DEBUG") as service:
        for _ in range(5):
            with raw_connection(service) as sock:
                sock.sendall(head.encode() + b'{"provider": "upsampler", "image": "' + b"A" * 4000)
                time.sleep(0.1)
        time.sleep(0.5)
        assert service.client.get("/healthz").status_code == 200
        log = service.proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert log.count("request.abandoned") == 5


# -- the standalone sandbox (`upscale sandbox`) listens with the same settings ------


@pytest.fixture(scope="module")
def limited_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("limited-sandbox")
    port = free_port()
    env = clean_env(
        UPSCALE_DATA_DIR=str(tmp / "sb"),
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        UPSCALE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        UPSCALE_MAX_HEADER_BYTES="16384",
        UPSCALE_LIMIT_CONCURRENCY="8",
    )
    with running(tmp, ["sandbox"], env, port=port, health="/sandbox/stats") as proc:
        service = Service(port, tmp / "sb", proc)
        try:
            yield service
        finally:
            service.client.close()


def test_the_standalone_sandbox_closes_a_connection_that_sends_nothing(
    limited_sandbox: Service,
) -> None:
    with raw_connection(limited_sandbox) as sock:
        _, took = read_until_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert took >= HEADER_TIMEOUT_S * 0.9


def test_the_standalone_sandbox_refuses_oversized_headers(limited_sandbox: Service) -> None:
    answer = _send_oversized_headers(limited_sandbox, b"GET /sandbox/stats")
    assert answer.startswith(b"HTTP/1.1 431")


def test_the_standalone_sandbox_answers_503_past_the_connection_limit(
    limited_sandbox: Service,
) -> None:
    answer = _answer_past_the_connection_limit(limited_sandbox, b"GET /sandbox/stats")
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]


def test_the_standalone_sandbox_gives_a_body_a_deadline(limited_sandbox: Service) -> None:
    head = (
        "POST /sandbox/upsampler/api/v1/smart-upscale HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer anything\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with raw_connection(limited_sandbox) as sock:
        sock.sendall(head.encode() + b'{"input": {"imageUrl": "')
        answer, took = read_until_closed(sock, BODY_TIMEOUT_S + SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took >= BODY_TIMEOUT_S * 0.9


def test_the_standalone_sandbox_caps_a_body(limited_sandbox: Service) -> None:
    head = (
        "POST /sandbox/photio/v1/inference/upscale HTTP/1.1\r\nHost: x\r\n"
        "X-Photio-Key: anything\r\n"
        f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n\r\n"
    )
    with raw_connection(limited_sandbox) as sock:
        sock.sendall(head.encode())
        answer, _ = read_until_closed(sock, SLACK_S)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error"' in answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /callbacks/fotor/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /callbacks/fotor/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"FOO /callbacks/fotor/x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /callbacks/fotor/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
    ],
)
def test_a_request_the_parser_cannot_read_is_a_json_400(
    limited: Service, request_bytes: bytes
) -> None:
    with raw_connection(limited) as sock:
        sock.sendall(request_bytes)
        answer, _ = read_until_closed(sock, SLACK_S)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "invalid_request"


def _send_oversized_headers(service: Service, request_line: bytes) -> bytes:
    """``request_line`` followed by 40 KB of headers; what the server answered."""
    with raw_connection(service) as sock:
        sock.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass
        answer, _ = read_until_closed(sock, SLACK_S)
    return answer


def _answer_past_the_connection_limit(service: Service, request_line: bytes) -> bytes:
    """The answer to one request more while 8 connections (the limit) are held open
    with unfinished headers."""
    held: list[socket.socket] = []
    try:
        for _ in range(8):
            sock = raw_connection(service)
            sock.sendall(request_line + b" HTTP/1.1\r\n")  # headers not finished: held open
            held.append(sock)
        time.sleep(0.2)
        with raw_connection(service) as sock:
            sock.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer, _ = read_until_closed(sock, SLACK_S)
    finally:
        for sock in held:
            sock.close()
    return answer
