"""Events survive a SIGKILL: the outbox delivers after restart."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from standardwebhooks import Webhook

from tests.e2e.harness import Sandbox, free_port, start_service
from tests.factories import make_png
from tests.unit.test_layers import ROOT

pytestmark = pytest.mark.e2e


class Consumer:
    def __init__(self) -> None:
        self.status = 503
        self.received: list[tuple[dict[str, str], bytes]] = []
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-body (a worker killed while sending): no
                    # web server hands such a request on, and nobody answers it.
                    return
                if consumer.status < 300:
                    consumer.received.append((dict(self.headers.items()), body))
                self.send_response(consumer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def consumer() -> Iterator[Consumer]:
    c = Consumer()
    try:
        yield c
    finally:
        c.close()


def test_sigkill_between_transition_and_delivery_loses_no_event(
    tmp_path: Path, sandbox: Sandbox, consumer: Consumer
) -> None:
    port = free_port()
    env = {
        "UPSCALE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": ",".join(["0.5"] + ["1"] * 40),
    }
    svc = start_service(tmp_path, sandbox, port=port, env=env)
    sub = svc.client.post("/v1/subscriptions", json={"url": consumer.url}).json()
    ids = [svc.submit(make_png(10 + i, 10))["id"] for i in range(4)]
    svc.wait(ids, done=lambda j: j["state"] == "succeeded")
    svc.proc.kill()  # every event is in the outbox; the consumer has acknowledged none
    svc.client.close()
    assert consumer.received == []
    consumer.status = 200
    svc = start_service(tmp_path, sandbox, port=port, data_dir=tmp_path / "data", env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(consumer.received) < 12:
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more should arrive
        wh = Webhook(sub["secret"])
        payloads = [wh.verify(body, headers) for headers, body in consumer.received]
        assert len(payloads) == 12
        assert len({h["webhook-id"] for h, _ in consumer.received}) == 12
        schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
        for job_id in ids:
            mine = [p for p in payloads if p["data"]["id"] == job_id]
            assert [p["type"] for p in mine] == ["job.queued", "job.submitted", "job.succeeded"]
            assert mine[-1]["data"]["result"]["url"].endswith(f"/v1/jobs/{job_id}/result")
            for payload in mine:
                jsonschema.validate(payload, schema)
    finally:
        svc.close()
