"""One frozen Settings object, read from the environment at the edge and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROVIDERS = ("upsampler", "fotor", "photio", "artnex")


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    api_key: Secret | None
    base_url: str | None
    verify_callbacks: bool
    submits_per_min: int
    submits_per_hour: int
    submits_per_day: int
    status_per_min: int
    callback_ips: str = ""
    # Credits this provider may be reported to spend per UTC day (0: no cap).
    daily_spend_cap: float = 0.0

    @property
    def sandboxed(self) -> bool:
        return self.api_key is None


REAL_BASE_URLS = {
    "upsampler": "https://upsampler.com/api/v1",
    "fotor": "https://api-b.fotor.com",
    "photio": "https://api.photio.io",
    "artnex": "https://api.artnex.ai",
}
# (submits/min, submits/hour, submits/day, status calls/min); 0 is no limit.
# Upsampler's are published; Fotor's and Photio's are not (conservative guesses);
# Artnex counts a rolling day (100 on the free plan).
DEFAULT_BUDGETS = {
    "upsampler": (90, 6000, 0, 240),
    "fotor": (60, 3000, 0, 120),
    "photio": (30, 1000, 0, 0),
    "artnex": (30, 0, 100, 0),
}
# A Fotor webhook is unsigned and shared by every job of the account: by
# default its success is only a hint, confirmed through the status endpoint.
DEFAULT_VERIFY_CALLBACKS = {"fotor": True}
FOTOR_WEBHOOK_IPS = "54.212.95.175,44.236.127.35"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("data")
    public_url: str | None = None
    database_url: str | None = None
    secret_keys: tuple[Secret, ...] = ()
    api_tokens: tuple[Secret, ...] = ()
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    fetch_allow_hosts: str = ""
    results_url: str = ""
    # UPSCALE_S3_ENDPOINT_URL and AWS_* for an s3:// results URL (kept out of reprs).
    s3_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    trusted_proxies: str = ""
    webhook_retry_schedule: str = ""
    webhook_timeout_s: float = 10.0
    webhook_disable_after: int = 50
    webhook_allow_hosts: str = ""
    secret_grace_s: float = 86400.0
    sse_heartbeat_s: float = 15.0
    stuck_after_s: float = 900.0
    lease_s: float = 300.0
    fotor_max_image_px: int = 2048
    fotor_s3_base_url: str = "https://pub-static.fotor.com"
    local_workers: int = 2
    local_max_pixels: int = 16_000_000
    local_max_jobs: int = 4
    local_engine: str | None = None
    sandbox_faults: str = ""
    # auto: mount the sandbox in `upscale serve` only when the service is private to
    # this machine; on / off: always / never (orchestrator/sandbox/exposure.py).
    sandbox: str = "auto"
    # The operator console at /console (UPSCALE_CONSOLE=off removes it).
    console: bool = True
    poll_grace_s: float = 20.0
    poll_base_s: float = 5.0
    poll_cap_s: float = 300.0
    job_deadline_s: float = 3600.0
    submit_timeout_s: float = 60.0
    sync_timeout_s: float = 300.0
    input_url_ttl_s: float = 86400.0
    max_callback_bytes: int = 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024
    max_result_bytes: int = 512 * 1024 * 1024
    max_result_pixels: int = 178_000_000
    worker_concurrency: int = 8
    # The listener faces the internet: how long a client may take to send its request
    # line and headers, and its body; how large its headers may be; how many
    # connections and requests are served at once; how many uploads stream at once.
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    limit_concurrency: int = 1000
    max_concurrent_uploads: int = 8
    # SQLite durability: NORMAL (a power cut may lose the last commits, never corrupts)
    # or FULL (every commit survives a power cut; group commit keeps callbacks fast).
    sqlite_synchronous: str = "NORMAL"
    sqlite_busy_timeout_ms: int = 5000
    # Start on a new empty SQLite database even where the data directory says one existed.
    allow_new_database: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    # Routing across providers: named routes (``name=p1,p2;name=p3``), daily spend
    # caps (``provider=credits,...``; UPSCALE_<PROVIDER>_DAILY_SPEND_CAP too), the
    # cool-down of a failing provider, and how many deferred submits (429, 5xx) one
    # provider gets before a routed job moves on.
    routes: str = ""
    spend_caps: str = ""
    cooldown_failures: int = 3
    cooldown_base_s: float = 30.0
    cooldown_cap_s: float = 900.0
    cooldown_probe_s: float = 300.0
    failover_submit_tries: int = 3

    @property
    def database_url_or_default(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'upscale.db'}"

    @property
    def uses_postgres(self) -> bool:
        return self.database_url_or_default.startswith(("postgresql://", "postgres://"))

    @property
    def database_path(self) -> Path:
        url = self.database_url_or_default
        if not url.startswith("sqlite:///"):
            raise ValueError(
                "UPSCALE_DATABASE_URL must be sqlite:///PATH or postgresql://..., "
                f"got {url.split('://', 1)[0]}://..."
            )
        return Path(url.removeprefix("sqlite:///"))

    def public_base(self, fallback: str) -> str:
        return (self.public_url or fallback).rstrip("/")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_float(env, name, default))


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (any case); the first when unset."""
    raw = env.get(name, "").strip().upper()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _secrets(raw: str | None) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in (raw or "").split(",") if part.strip())


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    providers: dict[str, ProviderSettings] = {}
    for name in PROVIDERS:
        upper = name.upper()
        key = env.get(f"UPSCALE_{upper}_API_KEY", "").strip()
        per_min, per_hour, per_day, status_min = DEFAULT_BUDGETS[name]
        providers[name] = ProviderSettings(
            api_key=Secret(key) if key else None,
            base_url=env.get(f"UPSCALE_{upper}_BASE_URL") or None,
            verify_callbacks=_bool(
                env, f"UPSCALE_{upper}_VERIFY_CALLBACKS", DEFAULT_VERIFY_CALLBACKS.get(name, False)
            ),
            submits_per_min=_int(env, f"UPSCALE_{upper}_SUBMITS_PER_MIN", per_min),
            submits_per_hour=_int(env, f"UPSCALE_{upper}_SUBMITS_PER_HOUR", per_hour),
            submits_per_day=_int(env, f"UPSCALE_{upper}_SUBMITS_PER_DAY", per_day),
            status_per_min=_int(env, f"UPSCALE_{upper}_STATUS_PER_MIN", status_min),
            callback_ips=env.get(f"UPSCALE_{upper}_CALLBACK_IPS", ""),
            daily_spend_cap=max(0.0, _float(env, f"UPSCALE_{upper}_DAILY_SPEND_CAP", 0.0)),
        )
    return Settings(
        data_dir=Path(env.get("UPSCALE_DATA_DIR") or "data"),
        public_url=env.get("UPSCALE_PUBLIC_URL") or None,
        database_url=env.get("UPSCALE_DATABASE_URL") or None,
        secret_keys=_secrets(env.get("UPSCALE_SECRET_KEYS")),
        api_tokens=_secrets(env.get("UPSCALE_API_TOKENS")),
        providers=providers,
        fetch_allow_hosts=env.get("UPSCALE_FETCH_ALLOW_HOSTS", ""),
        results_url=env.get("UPSCALE_RESULTS_URL", ""),
        s3_env={
            k: v for k, v in env.items() if k.startswith("AWS_") or k.startswith("UPSCALE_S3_")
        },
        trusted_proxies=env.get("UPSCALE_TRUSTED_PROXIES", ""),
        webhook_retry_schedule=env.get("UPSCALE_WEBHOOK_RETRY_SCHEDULE_S", ""),
        webhook_timeout_s=_float(env, "UPSCALE_WEBHOOK_TIMEOUT_S", 10.0),
        webhook_disable_after=max(1, _int(env, "UPSCALE_WEBHOOK_DISABLE_AFTER", 50)),
        webhook_allow_hosts=env.get("UPSCALE_WEBHOOK_ALLOW_HOSTS", ""),
        secret_grace_s=_float(env, "UPSCALE_SECRET_GRACE_S", 86400.0),
        sse_heartbeat_s=_float(env, "UPSCALE_SSE_HEARTBEAT_S", 15.0),
        stuck_after_s=_float(env, "UPSCALE_STUCK_AFTER_S", 900.0),
        lease_s=max(1.0, _float(env, "UPSCALE_LEASE_S", 300.0)),
        fotor_max_image_px=_int(env, "UPSCALE_FOTOR_MAX_IMAGE_PX", 2048),
        fotor_s3_base_url=env.get("UPSCALE_FOTOR_S3_BASE_URL") or "https://pub-static.fotor.com",
        local_workers=max(1, _int(env, "UPSCALE_LOCAL_WORKERS", 2)),
        local_max_pixels=_int(env, "UPSCALE_LOCAL_MAX_PIXELS", 16_000_000),
        local_max_jobs=max(1, _int(env, "UPSCALE_LOCAL_MAX_JOBS", 4)),
        local_engine=env.get("UPSCALE_LOCAL_ENGINE") or None,
        sandbox_faults=env.get("UPSCALE_SANDBOX_FAULTS", ""),
        sandbox=_choice(env, "UPSCALE_SANDBOX", ("AUTO", "ON", "OFF")).lower(),
        console=_bool(env, "UPSCALE_CONSOLE", True),
        poll_grace_s=_float(env, "UPSCALE_POLL_GRACE_S", 20.0),
        poll_base_s=_float(env, "UPSCALE_POLL_BASE_S", 5.0),
        poll_cap_s=_float(env, "UPSCALE_POLL_CAP_S", 300.0),
        job_deadline_s=_float(env, "UPSCALE_JOB_DEADLINE_S", 3600.0),
        submit_timeout_s=_float(env, "UPSCALE_SUBMIT_TIMEOUT_S", 60.0),
        sync_timeout_s=_float(env, "UPSCALE_SYNC_TIMEOUT_S", 300.0),
        input_url_ttl_s=_float(env, "UPSCALE_INPUT_URL_TTL_S", 86400.0),
        max_callback_bytes=_int(env, "UPSCALE_MAX_CALLBACK_BYTES", 1024 * 1024),
        max_upload_bytes=_int(env, "UPSCALE_MAX_UPLOAD_BYTES", 25 * 1024 * 1024),
        max_result_bytes=_int(env, "UPSCALE_MAX_RESULT_BYTES", 512 * 1024 * 1024),
        max_result_pixels=_int(env, "UPSCALE_MAX_RESULT_PIXELS", 178_000_000),
        worker_concurrency=max(1, _int(env, "UPSCALE_WORKER_CONCURRENCY", 8)),
        header_timeout_s=_float(env, "UPSCALE_HEADER_TIMEOUT_S", 10.0),
        keep_alive_timeout_s=_float(env, "UPSCALE_KEEP_ALIVE_TIMEOUT_S", 5.0),
        body_timeout_s=_float(env, "UPSCALE_BODY_TIMEOUT_S", 60.0),
        max_header_bytes=max(1024, _int(env, "UPSCALE_MAX_HEADER_BYTES", 64 * 1024)),
        limit_concurrency=_int(env, "UPSCALE_LIMIT_CONCURRENCY", 1000),
        max_concurrent_uploads=max(1, _int(env, "UPSCALE_MAX_CONCURRENT_UPLOADS", 8)),
        sqlite_synchronous=_choice(env, "UPSCALE_SQLITE_SYNCHRONOUS", ("NORMAL", "FULL")),
        sqlite_busy_timeout_ms=_int(env, "UPSCALE_SQLITE_BUSY_TIMEOUT_MS", 5000),
        allow_new_database=_bool(env, "UPSCALE_ALLOW_NEW_DATABASE", False),
        log_level=env.get("UPSCALE_LOG_LEVEL", "INFO").upper(),
        log_format=env.get("UPSCALE_LOG_FORMAT", "text").lower(),
        routes=env.get("UPSCALE_ROUTES", ""),
        spend_caps=env.get("UPSCALE_SPEND_CAPS", ""),
        cooldown_failures=max(1, _int(env, "UPSCALE_COOLDOWN_FAILURES", 3)),
        cooldown_base_s=max(0.0, _float(env, "UPSCALE_COOLDOWN_BASE_S", 30.0)),
        cooldown_cap_s=max(0.0, _float(env, "UPSCALE_COOLDOWN_CAP_S", 900.0)),
        cooldown_probe_s=max(1.0, _float(env, "UPSCALE_COOLDOWN_PROBE_S", 300.0)),
        failover_submit_tries=max(1, _int(env, "UPSCALE_FAILOVER_SUBMIT_TRIES", 3)),
    )
