"""The composition root: builds the store, clients, providers and orchestrator from Settings."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.common.clock import Clock, SystemClock
from orchestrator.common.metrics import Metrics
from orchestrator.common.settings import REAL_BASE_URLS, Secret, Settings
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.core.inputs import InputStore
from orchestrator.domain.backoff import PollPolicy
from orchestrator.domain.cooldown import CooldownPolicy
from orchestrator.domain.events import Snapshot
from orchestrator.fetch.allowlist import AllowList
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.fetch.transport import make_guarded_client
from orchestrator.local.app import LOCAL_MOUNT
from orchestrator.local.engines import available_engines
from orchestrator.outbound.dispatcher import Dispatcher
from orchestrator.outbound.schedule import RetrySchedule, parse_schedule
from orchestrator.providers.base import Provider
from orchestrator.providers.local import LocalProvider
from orchestrator.providers.registry import SANDBOX_PATHS, build_provider
from orchestrator.results.backends import inputs_url, open_result_storage
from orchestrator.results.storage import LocalResultStorage, ResultStorage
from orchestrator.sandbox.exposure import SandboxMount, decide_sandbox_mount
from orchestrator.security.bootstrap_secrets import api_tokens, signing_keys
from orchestrator.security.signing import CallbackSigner, InputSigner
from orchestrator.security.sources import SourcePolicy, parse_networks
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.protocol import Store
from orchestrator.store.sqlite import SQLiteStore
from orchestrator.store.sqlite_file import DatabaseMarker
from orchestrator.store.sqlite_watch import DataVersionWatch
from schemas.api import job_to_public
from schemas.routes import parse_routes, parse_spend_caps

log = logging.getLogger(__name__)


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
    # Whether `upscale serve` mounts the sandbox at /sandbox, and why.
    sandbox_mount: SandboxMount = field(default_factory=lambda: SandboxMount(False, "unset"))
    # Providers not offered, with what to do about it (a job for one is a 400).
    unavailable: Mapping[str, str] = field(default_factory=dict)
    # Where input image URLs / webhook URLs may point besides public addresses.
    fetch_allow: AllowList = field(default_factory=AllowList)
    webhook_allow: AllowList = field(default_factory=AllowList)
    # Where the mounted sandbox and the local provider may connect besides public
    # addresses: the service's own origins and UPSCALE_FETCH_ALLOW_HOSTS.
    own_allow: AllowList = field(default_factory=AllowList)
    metrics: Metrics = field(default_factory=Metrics)
    dispatcher: Dispatcher | None = None
    # SQLite: notices other processes' commits (PostgreSQL has LISTEN/NOTIFY).
    watch: DataVersionWatch | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run work that outlives the request that asked for it (until stop)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self.orchestrator.providers

    async def start(self) -> None:
        await self.store.open()
        if self.watch is not None:
            self.watch.start()
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
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(set(self._background))
        for task in self._tasks:
            await task
        self._tasks.clear()
        if self.watch is not None:
            await self.watch.stop()
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


def sandbox_api_key(keys: tuple[Secret, ...]) -> str:
    """The only key the mounted sandbox's provider APIs accept, derived like
    :func:`local_api_key`: nobody outside the deployment can use them."""
    return hmac.new(keys[-1].reveal().encode(), b"sandbox-providers", hashlib.sha256).hexdigest()


def _no_key_message(name: str, mount: SandboxMount) -> str:
    return (
        f"provider {name} is not available: set UPSCALE_{name.upper()}_API_KEY "
        f"(the built-in sandbox is not mounted: {mount.reason}; "
        f"or run `upscale sandbox` and set UPSCALE_{name.upper()}_BASE_URL)"
    )


def build_runtime(
    settings: Settings,
    *,
    listen_url: str,
    bind_host: str | None = None,
    clock: Clock | None = None,
    run_loops: bool = True,
) -> Runtime:
    """``bind_host`` is the host the listener binds (``None``: unknown, as for a
    worker); with ``settings.sandbox`` it decides whether the sandbox is mounted."""
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
    fetch_allow = AllowList.parse(settings.fetch_allow_hosts)
    allow = fetch_allow
    mount = decide_sandbox_mount(
        settings.sandbox, bind_host=bind_host, public_url=settings.public_url
    )
    uses_mount = False
    unavailable: dict[str, str] = {}
    providers: dict[str, Provider] = {}
    sandboxed: list[str] = []
    verify: set[str] = set()
    for name, conf in settings.providers.items():
        if conf.sandboxed:
            if conf.base_url:
                base_url = conf.base_url
            elif mount.mounted:
                base_url = f"{listen_url}{SANDBOX_PATHS[name]}"
                uses_mount = True
            else:
                unavailable[name] = _no_key_message(name, mount)
                continue
            key = sandbox_api_key(keys)
        else:
            base_url = conf.base_url or REAL_BASE_URLS[name]
            key = conf.api_key.reveal() if conf.api_key else sandbox_api_key(keys)
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
    own_allow = fetch_allow.with_origin(listen_url).with_origin(public_base)
    if mount.mounted and not uses_mount:
        mount = SandboxMount(False, "every provider has an API key or a base URL")
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
        submit_timeout_s=settings.submit_timeout_s,
        # A submitting job is held as long as its own provider's call may take:
        # a synchronous provider's call is the whole upscale (the sync timeout).
        submit_timeouts_s={
            name: (
                settings.sync_timeout_s if p.callback_mode == "none" else settings.submit_timeout_s
            )
            for name, p in providers.items()
        },
        input_url_ttl_s=settings.input_url_ttl_s,
        poll=PollPolicy(
            grace_s=settings.poll_grace_s, base_s=settings.poll_base_s, cap_s=settings.poll_cap_s
        ),
        concurrency=settings.worker_concurrency,
        verify_callbacks=frozenset(verify),
        stuck_after_s=settings.stuck_after_s,
        max_idle_s=1.0 if settings.uses_postgres else 60.0,
        lease_s=settings.lease_s,
        routes=parse_routes(settings.routes, known=frozenset(settings.providers) | {"local"}),
        spend_caps=spend_caps(settings),
        cooldown=CooldownPolicy(
            threshold=settings.cooldown_failures,
            base_s=settings.cooldown_base_s,
            cap_s=max(settings.cooldown_base_s, settings.cooldown_cap_s),
            probe_lease_s=settings.cooldown_probe_s,
        ),
        failover_submit_tries=settings.failover_submit_tries,
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
    watch = None
    if not settings.uses_postgres:

        def changed() -> None:
            # Another connection committed: perhaps a job, a callback or an event
            # from another process. Look now instead of after the idle wait.
            orchestrator.wake()
            store.events_written.notify()

        watch = DataVersionWatch(settings.database_path, changed)
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
        sandbox_mount=mount,
        unavailable=unavailable,
        fetch_allow=fetch_allow,
        webhook_allow=AllowList.parse(settings.webhook_allow_hosts),
        own_allow=own_allow,
        run_loops=run_loops,
        sole_process=not settings.uses_postgres,
        dispatcher=dispatcher,
        watch=watch,
        metrics=metrics,
        clients=[api_client, fetch_client, webhook_client],
    )


def spend_caps(settings: Settings) -> dict[str, float]:
    """Each provider's daily spend cap: ``UPSCALE_<PROVIDER>_DAILY_SPEND_CAP``, or its
    entry in ``UPSCALE_SPEND_CAPS`` (which wins)."""
    caps = {n: p.daily_spend_cap for n, p in settings.providers.items() if p.daily_spend_cap > 0}
    caps.update(
        parse_spend_caps(settings.spend_caps, known=frozenset(settings.providers) | {"local"})
    )
    return caps
