"""Parsing UPSCALE_RESULTS_URL into a result store (no server is contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.results.backends import (
    LocalTarget,
    S3Target,
    default_results_url,
    open_result_storage,
    parse_results_url,
)
from orchestrator.results.storage import LocalResultStorage

CREDS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG"}


def parse(url: str, env: dict[str, str] | None = None) -> LocalTarget | S3Target:
    return parse_results_url(url, data_dir=Path("/srv/upscale"), env=env or {})


# --------------------------------------------------------------------------- file://


def test_default_is_results_under_the_data_dir(tmp_path: Path) -> None:
    assert parse("") == LocalTarget(Path("/srv/upscale/results"))
    assert parse("   ") == LocalTarget(Path("/srv/upscale/results"))
    url = default_results_url(tmp_path)
    assert url == f"file://{tmp_path}/results"
    assert parse_results_url(url, data_dir=tmp_path, env={}) == LocalTarget(tmp_path / "results")


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("file:///var/lib/upscale/results", "/var/lib/upscale/results"),
        ("file://localhost/var/results/", "/var/results"),
        ("FILE:///x/y", "/x/y"),
        ("file:///srv/with%20space", "/srv/with space"),
    ],
)
def test_file_urls(url: str, root: str) -> None:
    assert parse(url) == LocalTarget(Path(root))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://var/results", "names host 'var'"),
        ("file://example.com/results", "names host"),
        ("file:relative/dir", "absolute path"),
        ("file:///srv/results?x=1", "query or fragment"),
        ("file:///srv/results#frag", "query or fragment"),
        ("file:///srv/../etc", r"'\.\.'"),
        ("file:///", "filesystem root"),
        ("file:///srv/a%00b", "NUL"),
        ("/srv/results", "unsupported scheme '\\(none\\)'"),
        ("results", "unsupported scheme"),
        ("http://example.com/results", "unsupported scheme 'http'"),
        ("gs://bucket/prefix", "unsupported scheme 'gs'"),
    ],
)
def test_bad_file_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(url)


def test_open_local(tmp_path: Path) -> None:
    storage = open_result_storage(
        (tmp_path / "elsewhere").as_uri(), data_dir=tmp_path / "data", env={}
    )
    assert isinstance(storage, LocalResultStorage)
    assert storage.root == tmp_path / "elsewhere"
    assert storage.tmp_dir.is_dir()
    default = open_result_storage("", data_dir=tmp_path / "data", env={})
    assert isinstance(default, LocalResultStorage)
    assert default.root == tmp_path / "data" / "results"


# --------------------------------------------------------------------------- s3://


def test_s3_url_with_environment() -> None:
    env = {
        **CREDS,
        "UPSCALE_S3_ENDPOINT_URL": "http://127.0.0.1:8333/",
        "AWS_REGION": "eu-central-1",
        "AWS_SESSION_TOKEN": "token",
    }
    assert parse("s3://my-bucket/results/v1/", env) == S3Target(
        bucket="my-bucket",
        prefix="results/v1",
        endpoint_url="http://127.0.0.1:8333",
        region="eu-central-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG",
        session_token="token",
    )


def test_s3_defaults() -> None:
    target = parse("s3://bucket.with.dots")
    assert isinstance(target, S3Target)
    assert target.prefix == ""
    assert target.endpoint_url is None
    assert target.region == "us-east-1"
    assert target.access_key_id is None and target.secret_access_key is None
    fallback = parse("s3://b12", {"AWS_DEFAULT_REGION": "ap-south-1"})
    assert isinstance(fallback, S3Target)
    assert fallback.region == "ap-south-1"


def test_s3_target_repr_hides_the_secret() -> None:
    target = parse("s3://bucket/p", CREDS)
    assert "wJalr" not in repr(target)
    assert "s3://bucket/p" in repr(target)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://ab", "not a valid bucket name"),
        ("s3://Upper", "not a valid bucket name"),
        ("s3://under_score", "not a valid bucket name"),
        ("s3://-dash", "not a valid bucket name"),
        ("s3://a..b", "not a valid bucket name"),
        ("s3://192.168.1.1", "not a valid bucket name"),
        ("s3://" + "b" * 64, "not a valid bucket name"),
        ("s3://bucket:9000/p", "not a valid bucket name"),
        ("s3://key:secret@bucket/p", "must not carry credentials"),
        ("s3://bucket/p?region=x", "query or fragment"),
        ("s3://bucket/p#x", "query or fragment"),
        ("s3://bucket/a/../b", "prefix segment '..'"),
        ("s3://bucket/a/./b", "prefix segment '.'"),
        ("s3://bucket/a b", "prefix segment 'a b'"),
        ("s3://bucket/a//b", "empty prefix segment"),
    ],
)
def test_bad_s3_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(url)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "only-the-id"}, "both AWS_ACCESS_KEY_ID"),
        ({"AWS_SECRET_ACCESS_KEY": "only-the-secret"}, "both AWS_ACCESS_KEY_ID"),
        ({"UPSCALE_S3_ENDPOINT_URL": "ftp://host"}, "must be http"),
        ({"UPSCALE_S3_ENDPOINT_URL": "127.0.0.1:8333"}, "must be http"),
        ({"UPSCALE_S3_ENDPOINT_URL": "http://host:99999"}, "not a valid URL"),
        ({"UPSCALE_S3_ENDPOINT_URL": "http://host/bucket"}, "no path, query or fragment"),
        ({"UPSCALE_S3_ENDPOINT_URL": "http://u:p@host"}, "must not carry credentials"),
        ({"AWS_REGION": "EU West"}, "not a region name"),
    ],
)
def test_bad_s3_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse("s3://bucket/p", env)


def test_open_s3_contacts_nothing(tmp_path: Path) -> None:
    results_s3 = pytest.importorskip("orchestrator.results.s3", reason="the 's3' extra")
    storage = open_result_storage(
        "s3://bucket/pre/fix",
        data_dir=tmp_path,
        env={**CREDS, "UPSCALE_S3_ENDPOINT_URL": "http://127.0.0.1:1"},
    )
    assert isinstance(storage, results_s3.S3ResultStorage)
    assert storage.bucket == "bucket"
    assert storage.object_key("job_1.png") == "pre/fix/job_1.png"
    assert storage.endpoint_url == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="invalid result key"):
        storage.object_key("../job_1.png")
