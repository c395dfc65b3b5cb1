"""A world for driving the engine from outside: fake providers, a killable store.

- :class:`Cloud` plays Upsampler, Fotor and Photio behind one
  ``httpx.MockTransport`` (their real wire formats, see ``providers.md``) and the
  host their results are downloaded from. It counts the submits it receives per
  input image, so a test can tell whether a job was ever sent twice. How it
  answers each job's submit is scripted per input image (:data:`PLANS`).
- :class:`KillableStore` forwards every ``Store`` verb to a real store and can
  be told to "die" after a number of calls, before or after the call commits:
  from then on every call raises :class:`SimulatedCrash`, as the next statement
  of a killed process would never run.
- :func:`open_engine` assembles one process's ``Orchestrator`` over a database
  (SQLite file or PostgreSQL DSN); building a second one over the same database
  is a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import Secret
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.core.inputs import InputStore
from orchestrator.domain.backoff import PollPolicy
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.providers.base import Provider
from orchestrator.providers.fotor import FotorProvider
from orchestrator.providers.photio import PhotioProvider
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.results.storage import LocalResultStorage
from orchestrator.security.signing import CallbackSigner, InputSigner
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.protocol import Store
from orchestrator.store.sqlite import SQLiteStore
from tests.factories import make_png

UPSAMPLER = "https://upsampler.test/api/v1"
FOTOR = "https://fotor.test"
PHOTIO = "https://photio.test"
RESULTS = "https://results.test"
PUBLIC = "https://orchestrator.test"

# How a provider answers one submit:
# accept  - takes the job and answers with its id (Photio: with the image);
# refuse  - 400, nothing created;
# busy    - 503, nothing created (the orchestrator tries again later);
# timeout - takes the job, then the answer is lost (ReadTimeout);
# early   - takes the job, finishes it and sends its callback before answering;
# early_timeout - as early, then the answer is lost;
# racing  - takes the job, finishes it and sends its callback as it answers: the
#           inbox works on the callback while the answer is being stored.
PLANS = ("accept", "refuse", "busy", "timeout", "early", "early_timeout", "racing")
SCALE = {"upsampler": 2.0, "fotor": 2.0, "photio": 2.0}


class SimulatedCrash(BaseException):
    """The process was killed: nothing after this point runs.

    A ``BaseException`` so that no ``except Exception`` of the code under test
    turns the kill into an ordinary error it recovers from.
    """


class KillableStore:
    """Every Store verb forwarded to ``inner``; :meth:`kill_after` arms a crash."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.dead = False
        self._left: int | None = None
        self._verb: str | None = None
        self._before = True

    def kill_after(self, calls: int, *, before: bool, verb: str | None = None) -> None:
        """Die at the store call after ``calls`` more (of ``verb`` only, if given):
        ``before`` it runs, or right after it committed (its caller never hears back)."""
        self._left = calls
        self._verb = verb
        self._before = before

    def kill(self) -> None:
        self.dead = True

    def _due(self, name: str) -> bool:
        if self._left is None or self._verb not in (None, name):
            return False
        if self._left > 0:
            self._left -= 1
            return False
        self._left = None
        return True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise SimulatedCrash(name)
            if self._due(name):
                self.dead = True
                if self._before:
                    raise SimulatedCrash(f"before {name}")
                await attr(*args, **kwargs)
                raise SimulatedCrash(f"after {name}")
            return await attr(*args, **kwargs)

        return call


@dataclass
class RemoteJob:
    """A job as the provider sees it."""

    provider: str
    pjid: str
    image: str  # the input image URL the submit named
    webhook: str | None  # Upsampler: the per-job callback URL
    state: str = "running"  # running | succeeded | failed
    sent: list[bytes] = field(default_factory=list)  # callback bodies sent so far


Deliver = Callable[[RemoteJob, bytes], Awaitable[None]]


class Cloud:
    """The providers and the result host, faked at the HTTP level."""

    def __init__(self) -> None:
        # input image URL -> submits received that the provider took, or may have
        self.submits: Counter[str] = Counter()
        # (provider, input image URL) -> the same, per provider: a routed job may be
        # taken by each provider of its route once, never twice by one.
        self.taken: Counter[tuple[str, str]] = Counter()
        self.plans: dict[str, deque[str]] = {}  # input image URL -> answers to give
        self.remote: dict[str, RemoteJob] = {}  # provider job id -> job
        self.expired: set[str] = set()  # provider job ids whose result URL is gone (410)
        self.deliver: Deliver | None = None  # sends a callback (set by the test)
        self.early: Callable[[], Awaitable[None]] | None = None  # the inbox runs now
        self.racing: list[asyncio.Task[None]] = []  # inbox runs started by "racing"
        self._ids = 0

    # the provider APIs -------------------------------------------------------------------

    async def api(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if request.method == "POST":
            return await self._submit(request)
        if url.startswith(f"{UPSAMPLER}/status/"):
            remote = self.remote.get(url.rsplit("/", 1)[-1])
            if remote is None:
                return httpx.Response(404, json={"error": "not found"})
            return httpx.Response(200, content=self.body(remote))
        if url.startswith(f"{FOTOR}/v1/aiart/tasks/"):
            remote = self.remote.get(url.rsplit("/", 1)[-1])
            if remote is None:
                return httpx.Response(200, json={"code": "999", "msg": "no such task"})
            task = json.loads(self.body(remote))
            return httpx.Response(200, json={"code": "000", "msg": "success", "data": task})
        return httpx.Response(599, json={"error": f"unexpected call {request.method} {url}"})

    async def _submit(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        url = str(request.url)
        if url.startswith(UPSAMPLER):
            provider, image, webhook = "upsampler", body["input"]["imageUrl"], body["webhook"]
        elif url.startswith(FOTOR):
            provider, image, webhook = "fotor", body["userImageUrl"], None
        else:
            provider, image, webhook = "photio", body["image"], None
        queue = self.plans.get(image)
        plan = queue.popleft() if queue else "accept"
        if plan != "busy":  # a 503 took nothing: asking again is right
            self.submits[image] += 1
            self.taken[provider, image] += 1
        if plan == "refuse":
            return httpx.Response(400, json={"error": "bad image", "msg": "bad image"})
        if plan == "busy":
            return httpx.Response(503, json={"error": "busy", "msg": "busy"})
        if provider == "photio":
            if plan in ("timeout", "early_timeout"):
                raise httpx.ReadTimeout("no answer", request=request)
            return httpx.Response(200, json={"status_code": 200, "body": photio_image(image)})
        self._ids += 1
        pjid = f"up-{self._ids}" if provider == "upsampler" else f"{self._ids:032x}"
        remote = RemoteJob(provider, pjid, image, webhook)
        self.remote[pjid] = remote
        if plan in ("early", "early_timeout", "racing"):
            await self.finish(remote, "succeeded", callbacks=1)
            if self.early is not None and plan == "racing":
                self.racing.append(asyncio.ensure_future(self.early()))
            elif self.early is not None:
                await self.early()
        if plan in ("timeout", "early_timeout"):
            raise httpx.ReadTimeout("no answer", request=request)
        if provider == "upsampler":
            return httpx.Response(200, json={"id": pjid, "status": "IN_QUEUE", "creditCost": 1})
        return httpx.Response(200, json={"code": "000", "msg": "success", "data": {"taskId": pjid}})

    # what the provider says about a job (status answer and callback body alike) ------------

    def body(self, remote: RemoteJob, *, state: str | None = None) -> bytes:
        state = state or remote.state
        result = f"{RESULTS}/{remote.pjid}.png"
        if remote.provider == "upsampler":
            status = {"running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILED"}
            data: dict[str, Any] = {"id": remote.pjid, "status": status[state]}
            if state == "succeeded":
                data.update(imageUrl=result, compressedImageUrl=result, creditCost=1)
            if state == "failed":
                data["error"] = "could not upscale"
        else:
            code = {"running": 0, "succeeded": 1, "failed": 2}[state]
            data = {"taskId": remote.pjid, "status": code, "type": "imgupscale"}
            data["resultUrl"] = result if state == "succeeded" else ""
        return json.dumps(data, separators=(",", ":")).encode()

    async def finish(self, remote: RemoteJob, state: str, *, callbacks: int) -> None:
        """The provider ends the job and sends ``callbacks`` callbacks about it."""
        remote.state = state
        for _ in range(callbacks):
            await self.send(remote, self.body(remote))

    async def send(self, remote: RemoteJob, body: bytes) -> None:
        remote.sent.append(body)
        if self.deliver is not None:
            await self.deliver(remote, body)

    # the result host ----------------------------------------------------------------------

    def results(self, request: httpx.Request) -> httpx.Response:
        pjid = request.url.path.strip("/").removesuffix(".png")
        if pjid not in self.remote:
            return httpx.Response(404)
        if pjid in self.expired:
            return httpx.Response(410)
        return httpx.Response(
            200, stream=_Streamed(make_png(8, 6)), headers={"content-type": "image/png"}
        )


class _Streamed(httpx.AsyncByteStream):
    """A body that streams, as a real download does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def photio_image(image_url: str) -> str:
    """Photio's answer for an input: the same picture always upscales the same way."""
    red, green, blue = hashlib.sha256(image_url.rsplit("/", 1)[-1].encode()).digest()[:3]
    return base64.b64encode(make_png(8, 6, (red, green, blue))).decode("ascii")


@dataclass
class Engine:
    """One process: its orchestrator over a killable store, and its HTTP clients."""

    orchestrator: Orchestrator
    store: KillableStore
    clients: tuple[httpx.AsyncClient, ...]

    async def close(self) -> None:
        """Kill the process: nothing of it runs on, its connections are dropped."""
        self.store.kill()
        tasks = list(self.orchestrator._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for client in self.clients:
            await client.aclose()
        await self.store.inner.close()


KEYS = [Secret("stateful-test-key-0123456789")]
SUBMIT_TIMEOUT_S = 5.0
JOB_DEADLINE_S = 600.0


async def open_store(where: str) -> Store:
    store: Store
    if where.startswith("postgresql://"):
        store = PostgresStore(where, max_size=4)
    else:
        store = SQLiteStore(Path(where))
    await store.open()
    return store


async def open_engine(where: str, files: Path, clock: FakeClock, cloud: Cloud) -> Engine:
    """A new process over the database at ``where`` (not yet recovered)."""
    store = KillableStore(await open_store(where))
    api = httpx.AsyncClient(transport=httpx.MockTransport(cloud.api))
    downloads = httpx.AsyncClient(transport=httpx.MockTransport(cloud.results))
    storage = LocalResultStorage(files / "results")
    providers: dict[str, Provider] = {
        "upsampler": UpsamplerProvider(
            api, base_url=UPSAMPLER, api_key="key", submit_timeout_s=SUBMIT_TIMEOUT_S
        ),
        "fotor": FotorProvider(
            api, base_url=FOTOR, api_key="key", submit_timeout_s=SUBMIT_TIMEOUT_S, clock=clock
        ),
        "photio": PhotioProvider(
            api, base_url=PHOTIO, api_key="key", submit_timeout_s=SUBMIT_TIMEOUT_S, clock=clock
        ),
    }

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    orchestrator = Orchestrator(
        config=EngineConfig(
            public_base=PUBLIC,
            job_deadline_s=JOB_DEADLINE_S,
            submit_timeout_s=SUBMIT_TIMEOUT_S,
            input_url_ttl_s=600,
            poll=PollPolicy(grace_s=20, base_s=5, cap_s=60),
            # One handler at a time: every interleaving comes from the test's own
            # steps, so a failing example replays exactly.
            concurrency=1,
            verify_callbacks=frozenset({"fotor"}),
        ),
        store=store,  # type: ignore[arg-type]
        providers=providers,
        fetcher=ResultFetcher(
            downloads,
            storage,
            storage.tmp_dir,
            max_bytes=10**6,
            max_pixels=10**6,
            sleep=no_wait,
        ),
        inputs=InputStore(
            LocalResultStorage(files / "inputs"), files / "inputs" / ".tmp", max_bytes=10**6
        ),
        callback_signer=CallbackSigner(KEYS, clock),
        input_signer=InputSigner(KEYS, clock),
        budgets=Budgets(store),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
    )
    return Engine(orchestrator, store, (api, downloads))
