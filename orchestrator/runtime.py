"""The composition root: builds the store, clients, providers and orchestrator from Settings."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orchestrator.backoff import PollPolicy
from orchestrator.bootstrap_secrets import api_tokens, signing_keys
from orchestrator.budgets import Budgets
from orchestrator.clock import Clock, SystemClock
from orchestrator.engine import EngineConfig, Orchestrator
from orchestrator.events import Snapshot
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.inputs import InputStore
from orchestrator.local.engines import available_engines
from orchestrator.local.server import LOCAL_MOUNT
from orchestrator.metrics import Metrics
from orchestrator.outbound.dispatcher import Dispatcher
from orchestrator.outbound.schedule import RetrySchedule, parse_schedule
from orchestrator.providers.base import Provider
from orchestrator.providers.local import LocalProvider
from orchestrator.providers.registry import SANDBOX_PATHS, build_provider
from orchestrator.results import LocalResultStorage, ResultStorage
from orchestrator.settings import REAL_BASE_URLS, Secret, Settings
from orchestrator.signing import CallbackSigner, InputSigner
from orchestrator.sources import SourcePolicy, parse_networks
from orchestrator.storage_url import inputs_url, open_result_storage
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.protocol import Store
from orchestrator.store.sqlite import SQLiteStore
from orchestrator.store.sqlite_file import DatabaseMarker
from schemas.api import job_to_public

log = logging.getLogger(__name__)

SANDBOX_KEY = "sandbox"


@dataclass
class Runtime:
    settings: Settings
    store: Store
    orchestrator: Orchestrator
    api_tokens: tuple[Secret, ...]
    api_token_file: Path | None
    results: ResultStorage
    inputs: InputStore
    callback_signer: CallbackSigner
    signing_keys: tuple[Secret, ...]
    input_signer: InputSigner
    sandboxed: tuple[str, ...]
    listen_url: str
    sources: SourcePolicy
    run_loops: bool = True
    sole_process: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    dispatcher: Dispatcher | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self.orchestrator.providers

    async def start(self) -> None:
        await self.store.open()
        if self.run_loops:
            self._stop.clear()
            self._tasks.append(
                asyncio.create_task(
                    self.orchestrator.run_forever(self._stop, sole_process=self.sole_process)
                )
            )
            if self.dispatcher is not None:
                self._tasks.append(asyncio.create_task(self.dispatcher.run_forever(self._stop)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            await task
        self._tasks.clear()
        for client in self.clients:
            await client.aclose()
        await self.results.aclose()
        await self.inputs.storage.aclose()
        await self.store.close()


def open_store(settings: Settings, *, snapshot: Snapshot) -> Store:
    """SQLite (the embedded default, one process) or PostgreSQL (several processes)."""
    if settings.uses_postgres:
        return PostgresStore(settings.database_url_or_default, snapshot=snapshot)
    return SQLiteStore(
        settings.database_path,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        snapshot=snapshot,
        # Start-up refuses a missing or empty database where there was one before.
        marker=DatabaseMarker.beside(
            settings.data_dir, settings.database_path, allow_new=settings.allow_new_database
        ),
    )


def local_api_key(keys: tuple[Secret, ...]) -> str:
    """The key the mounted local provider and its adapter share: derived from the
    newest signing key, so every process of one deployment agrees on it."""
    return hmac.new(keys[-1].reveal().encode(), b"local-provider", hashlib.sha256).hexdigest()


def build_runtime(
    settings: Settings,
    *,
    listen_url: str,
    clock: Clock | None = None,
    run_loops: bool = True,
) -> Runtime:
    clock = clock or SystemClock()
    data_dir = settings.data_dir
    listen_url = listen_url.rstrip("/")
    public_base = settings.public_base(listen_url)
    keys = signing_keys(settings.secret_keys, data_dir)
    tokens, token_file = api_tokens(settings.api_tokens, data_dir)
    callback_signer = CallbackSigner(keys, clock)
    input_signer = InputSigner(keys, clock)

    api_client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.submit_timeout_s, connect=10.0),
        follow_redirects=False,
        trust_env=False,
    )
    allow = AllowList.parse(settings.fetch_allow_hosts)
    providers: dict[str, Provider] = {}
    sandboxed: list[str] = []
    verify: set[str] = set()
    for name, conf in settings.providers.items():
        if conf.sandboxed:
            base_url = conf.base_url or f"{listen_url}{SANDBOX_PATHS[name]}"
            key = SANDBOX_KEY
        else:
            base_url = conf.base_url or REAL_BASE_URLS[name]
            key = conf.api_key.reveal() if conf.api_key else SANDBOX_KEY
        provider = build_provider(
            name,
            api_client,
            base_url=base_url,
            api_key=key,
            settings=settings,
            sandboxed=conf.sandboxed,
        )
        if provider is None:
            continue
        providers[name] = provider
        if conf.sandboxed:
            sandboxed.append(name)
            allow = allow.with_origin(base_url)
        if conf.verify_callbacks:
            verify.add(name)
    # The local provider: a provider server mounted in this service at /local,
    # spoken to over HTTP like any other, so local jobs take the same path.
    local_base = f"{listen_url}{LOCAL_MOUNT}"
    providers["local"] = LocalProvider(
        api_client,
        base_url=local_base,
        api_key=local_api_key(keys),
        engines=available_engines(),
        submit_timeout_s=settings.submit_timeout_s,
    )
    allow = allow.with_origin(local_base)
    fetch_client = make_guarded_client(allow, timeout=httpx.Timeout(60.0, connect=10.0))
    results = open_result_storage(settings.results_url, data_dir=data_dir, env=settings.s3_env)
    # Downloads spool next to local results (so the final rename is atomic), or
    # in the data directory before an upload to S3.
    spool = (
        results.tmp_dir if isinstance(results, LocalResultStorage) else data_dir / "tmp" / "results"
    )
    fetcher = ResultFetcher(
        fetch_client,
        results,
        spool,
        max_bytes=settings.max_result_bytes,
        max_pixels=settings.max_result_pixels,
    )
    input_storage = open_result_storage(
        inputs_url(settings.results_url, data_dir=data_dir),
        data_dir=data_dir,
        env=settings.s3_env,
    )
    inputs = InputStore(
        input_storage,
        input_storage.tmp_dir
        if isinstance(input_storage, LocalResultStorage)
        else data_dir / "tmp" / "inputs",
        max_bytes=settings.max_upload_bytes,
    )
    store = open_store(
        settings,
        snapshot=lambda job: job_to_public(
            job, result_url=f"{public_base}/v1/jobs/{job.id}/result"
        ),
    )
    budgets = Budgets(store)
    for name, conf in settings.providers.items():
        if name in providers:
            budgets.configure(
                name,
                "submit",
                [
                    (conf.submits_per_min, 60.0),
                    (conf.submits_per_hour, 3600.0),
                    (conf.submits_per_day, 86400.0),
                ],
            )
            budgets.configure(name, "status", [(conf.status_per_min, 60.0)])
    metrics = Metrics()
    store.transition_listeners.append(metrics.observe_transition)
    webhook_client = make_guarded_client(
        AllowList.parse(settings.webhook_allow_hosts),
        timeout=httpx.Timeout(settings.webhook_timeout_s, connect=5.0),
    )
    dispatcher = Dispatcher(
        store=store,
        client=webhook_client,
        clock=clock,
        schedule=RetrySchedule(parse_schedule(settings.webhook_retry_schedule)),
        timeout_s=settings.webhook_timeout_s,
        disable_after=settings.webhook_disable_after,
        on_attempt=lambda status: metrics.webhook_attempts.labels(status.value).inc(),
        lease_s=min(120.0, settings.lease_s),
    )
    config = EngineConfig(
        public_base=public_base,
        job_deadline_s=settings.job_deadline_s,
        # A submitting job is held as long as the longest provider call may take.
        submit_timeout_s=max(settings.submit_timeout_s, settings.sync_timeout_s),
        input_url_ttl_s=settings.input_url_ttl_s,
        poll=PollPolicy(
            grace_s=settings.poll_grace_s, base_s=settings.poll_base_s, cap_s=settings.poll_cap_s
        ),
        concurrency=settings.worker_concurrency,
        verify_callbacks=frozenset(verify),
        stuck_after_s=settings.stuck_after_s,
        max_idle_s=1.0 if settings.uses_postgres else 60.0,
        lease_s=settings.lease_s,
    )
    orchestrator = Orchestrator(
        config=config,
        store=store,
        providers=providers,
        fetcher=fetcher,
        inputs=inputs,
        callback_signer=callback_signer,
        input_signer=input_signer,
        budgets=budgets,
        clock=clock,
        rng=random.Random(),
        metrics=metrics,
    )
    return Runtime(
        settings=settings,
        store=store,
        orchestrator=orchestrator,
        api_tokens=tokens,
        api_token_file=token_file,
        results=results,
        inputs=inputs,
        callback_signer=callback_signer,
        signing_keys=keys,
        input_signer=input_signer,
        sandboxed=tuple(sandboxed),
        sources=SourcePolicy(
            {n: parse_networks(c.callback_ips) for n, c in settings.providers.items()},
            trusted_proxies=parse_networks(settings.trusted_proxies),
        ),
        listen_url=listen_url,
        run_loops=run_loops,
        sole_process=not settings.uses_postgres,
        dispatcher=dispatcher,
        metrics=metrics,
        clients=[api_client, fetch_client, webhook_client],
    )
