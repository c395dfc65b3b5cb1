"""Pick the result storage backend from a URL (``UPSCALE_RESULTS_URL``).

* ``file:///abs/path`` - :class:`~orchestrator.results.storage.LocalResultStorage` in
  that directory; the default is ``file://<data dir>/results``.
* ``s3://bucket/optional/prefix`` - :class:`~orchestrator.results.s3.S3ResultStorage`
  (needs the ``s3`` extra). Everything else comes from the environment:

  ============================ ==============================================
  ``UPSCALE_S3_ENDPOINT_URL``  ``http(s)://host[:port]`` of an S3-compatible
                               server; unset means AWS S3
  ``AWS_REGION``               default ``AWS_DEFAULT_REGION``, then us-east-1
  ``AWS_ACCESS_KEY_ID``        with ``AWS_SECRET_ACCESS_KEY``: both or
  ``AWS_SECRET_ACCESS_KEY``    neither (neither: botocore's own chain, e.g.
                               an instance role)
  ``AWS_SESSION_TOKEN``        optional
  ============================ ==============================================

:func:`parse_results_url` only parses (no import of the S3 client, no I/O),
so configuration can be checked at start-up; :func:`open_result_storage`
builds the store. Every malformed URL raises ValueError naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestrator.results.storage import LocalResultStorage, ResultStorage

__all__ = [
    "LocalTarget",
    "S3Target",
    "default_results_url",
    "open_result_storage",
    "parse_results_url",
]

# S3's rules for new buckets: 3-63 of a-z 0-9 . -, starting and ending alphanumeric.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+\Z")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")
_REGION = re.compile(r"[a-z0-9-]{1,40}\Z")


@dataclass(frozen=True, slots=True)
class LocalTarget:
    root: Path


@dataclass(frozen=True, slots=True)
class S3Target:
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Target(s3://{self.bucket}/{self.prefix}{where}, region={self.region!r})"


def default_results_url(data_dir: Path) -> str:
    """``file://<data dir>/results`` (absolute)."""
    return (data_dir / "results").absolute().as_uri()


def parse_results_url(
    url: str, *, data_dir: Path, env: Mapping[str, str]
) -> LocalTarget | S3Target:
    """What ``url`` names; an empty ``url`` is the default local directory."""
    text = url.strip()
    if not text:
        return LocalTarget((data_dir / "results").absolute())
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"results URL {text!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _parse_file(text, parts.netloc, parts.path, parts.query, parts.fragment)
    if scheme == "s3":
        return _parse_s3(text, parts.netloc, parts.path, parts.query, parts.fragment, env)
    raise ValueError(
        f"results URL {text!r} has unsupported scheme {parts.scheme or '(none)'!r}: "
        "use file:///absolute/path or s3://bucket/prefix"
    )


def open_result_storage(url: str, *, data_dir: Path, env: Mapping[str, str]) -> ResultStorage:
    """The result store ``url`` names (see the module doc). Nothing is contacted yet."""
    target = parse_results_url(url, data_dir=data_dir, env=env)
    if isinstance(target, LocalTarget):
        return LocalResultStorage(target.root)
    try:
        from orchestrator.results.s3 import S3ResultStorage
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "s3:// results need the S3 client: pip install 'upscale-orchestrator[s3]'"
        ) from exc
    return S3ResultStorage(
        target.bucket,
        target.prefix,
        endpoint_url=target.endpoint_url,
        region=target.region,
        access_key_id=target.access_key_id,
        secret_access_key=target.secret_access_key,
        session_token=target.session_token,
        spool_dir=data_dir / "tmp",
    )


def _parse_file(text: str, netloc: str, path: str, query: str, fragment: str) -> LocalTarget:
    if netloc not in ("", "localhost"):
        raise ValueError(
            f"results URL {text!r} names host {netloc!r}: a file:// URL must be "
            "file:///absolute/path (three slashes)"
        )
    if query or fragment:
        raise ValueError(f"results URL {text!r} must not have a query or fragment")
    local = unquote(path)
    if not local.startswith("/"):
        raise ValueError(f"results URL {text!r} must name an absolute path: file:///absolute/path")
    if "\x00" in local:
        raise ValueError(f"results URL {text!r} has a NUL byte in its path")
    root = Path(local)
    if ".." in root.parts:
        raise ValueError(f"results URL {text!r} must not contain '..'")
    if root == Path("/"):
        raise ValueError(f"results URL {text!r} names the filesystem root")
    return LocalTarget(root)


def _parse_s3(
    text: str, netloc: str, path: str, query: str, fragment: str, env: Mapping[str, str]
) -> S3Target:
    if "@" in netloc:
        raise ValueError(
            f"results URL {text!r} must not carry credentials: "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if query or fragment:
        raise ValueError(
            f"results URL {text!r} must not have a query or fragment: "
            "the endpoint and region come from UPSCALE_S3_ENDPOINT_URL and AWS_REGION"
        )
    bucket = netloc
    if not bucket:
        raise ValueError(f"results URL {text!r} names no bucket: use s3://bucket/prefix")
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise ValueError(
            f"results URL {text!r}: {bucket!r} is not a valid bucket name "
            "(3-63 characters of a-z, 0-9, '.', '-'; starting and ending with a letter or digit)"
        )
    segments = [s for s in path.split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise ValueError(
                f"results URL {text!r}: prefix segment {segment!r} is not allowed "
                "(use letters, digits, '_', '.', '-')"
            )
    if "//" in path.rstrip("/"):
        raise ValueError(f"results URL {text!r} has an empty prefix segment")
    key_id, secret = _credentials(env)
    return S3Target(
        bucket=bucket,
        prefix="/".join(segments),
        endpoint_url=_endpoint(env),
        region=_region(env),
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
    )


def _endpoint(env: Mapping[str, str]) -> str | None:
    raw = env.get("UPSCALE_S3_ENDPOINT_URL", "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"UPSCALE_S3_ENDPOINT_URL {raw!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"UPSCALE_S3_ENDPOINT_URL {raw!r} must be http(s)://host[:port], e.g. http://127.0.0.1:8333"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("UPSCALE_S3_ENDPOINT_URL must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"UPSCALE_S3_ENDPOINT_URL {raw!r} must have no path, query or fragment "
            "(put a key prefix in the s3:// URL instead)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _region(env: Mapping[str, str]) -> str:
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1").strip()
    if not _REGION.match(region):
        raise ValueError(f"AWS_REGION {region!r} is not a region name such as us-east-1")
    return region


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    key_id = env.get("AWS_ACCESS_KEY_ID") or None
    secret = env.get("AWS_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        raise ValueError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
    return key_id, secret


def inputs_url(results_url: str, *, data_dir: Path) -> str:
    """Where uploaded inputs go: beside the results (``.../inputs``), or, with the
    default local results, ``<data dir>/inputs``."""
    if not results_url.strip():
        return f"file://{(data_dir / 'inputs').resolve()}"
    return results_url.rstrip("/") + "/inputs"
