"""Log lines never carry a secret; settings parse strictly and never show a secret."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.common.logs import JsonFormatter, TextFormatter, scrub
from orchestrator.common.settings import Secret, load_settings
from orchestrator.security.signing import CallbackSigner, InputSigner

_CLOCK = FakeClock()
_KEYS = [Secret("unit-test-signing-key")]
CALLBACK_TOKEN = CallbackSigner(_KEYS, _CLOCK).for_job("upsampler", "job_0123", 4_000_000_000)
INPUT_TOKEN = InputSigner(_KEYS, _CLOCK).sign("job_0123.png", 4_000_000_000)
CALLBACK_URL = f"https://hooks.example.test/callbacks/upsampler/{CALLBACK_TOKEN}"
INPUT_URL = f"https://hooks.example.test/inputs/{INPUT_TOKEN}"


# --- scrub -----------------------------------------------------------------------------


def test_scrub_removes_a_callback_token() -> None:
    out = scrub(f"submitting with webhook {CALLBACK_URL} now")
    assert CALLBACK_TOKEN not in out
    assert "/callbacks/upsampler/[redacted]" in out
    assert out.startswith("submitting with webhook https://hooks.example.test")
    assert out.endswith(" now")


def test_scrub_removes_an_input_token() -> None:
    out = scrub(f"imageUrl={INPUT_URL}")
    assert INPUT_TOKEN not in out
    assert out == "imageUrl=https://hooks.example.test/inputs/[redacted]"


def test_scrub_removes_bearer_values() -> None:
    out = scrub("Authorization: Bearer xyz-secret-123 sent")
    assert "xyz-secret-123" not in out
    assert out == "Authorization: Bearer [redacted] sent"
    assert "abc" not in scrub("authorization: bearer abc")


def test_scrub_stops_at_quotes_and_query_strings() -> None:
    text = f'{{"url": "{CALLBACK_URL}?attempt=2", "other": \'{INPUT_URL}\'}}'
    out = scrub(text)
    assert CALLBACK_TOKEN not in out and INPUT_TOKEN not in out
    assert '/callbacks/upsampler/[redacted]?attempt=2", "other"' in out
    assert "/inputs/[redacted]'}" in out


def test_scrub_removes_every_occurrence_and_leaves_other_text_alone() -> None:
    text = f"{CALLBACK_URL} {CALLBACK_URL} {INPUT_URL} Bearer t1 Bearer t2"
    out = scrub(text)
    assert CALLBACK_TOKEN not in out and INPUT_TOKEN not in out
    assert "t1" not in out and "t2" not in out
    assert out.count("[redacted]") == 5
    plain = "job.created job_id=job_0123 provider=upsampler /v1/jobs/job_0123"
    assert scrub(plain) == plain


# --- formatters ------------------------------------------------------------------------


def _record(msg: str, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        name="orchestrator.test",
        level=logging.INFO,
        pathname=__file__,
        lineno=1,
        msg=msg,
        args=args,
        exc_info=None,
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _with_exception(record: logging.LogRecord) -> logging.LogRecord:
    try:
        raise RuntimeError(f"POST {CALLBACK_URL} failed")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    return record


FORMATTERS = [
    pytest.param(JsonFormatter(), id="json"),
    pytest.param(TextFormatter(), id="text"),
]


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_formatters_scrub_the_message(formatter: logging.Formatter) -> None:
    line = formatter.format(_record("calling back %s with Bearer %s", (CALLBACK_URL, "tok-1")))
    assert CALLBACK_TOKEN not in line
    assert "tok-1" not in line
    assert "/callbacks/upsampler/[redacted]" in line


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_formatters_scrub_extras(formatter: logging.Formatter) -> None:
    record = _record("provider.submit", url=CALLBACK_URL, image=INPUT_URL, job_id="job_0123")
    line = formatter.format(record)
    assert CALLBACK_TOKEN not in line
    assert INPUT_TOKEN not in line
    assert "job_0123" in line
    assert "/inputs/[redacted]" in line


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_formatters_scrub_exceptions(formatter: logging.Formatter) -> None:
    line = formatter.format(_with_exception(_record("submit.crashed")))
    assert "RuntimeError" in line
    assert CALLBACK_TOKEN not in line


def test_json_formatter_output_is_one_json_object() -> None:
    record = _record("callback.processed", job_id="job_1", action="applied", attempts=3)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "callback.processed"
    assert data["level"] == "info"
    assert data["logger"] == "orchestrator.test"
    assert data["job_id"] == "job_1"
    assert data["action"] == "applied"
    assert data["attempts"] == 3


def test_text_formatter_shows_extras_as_key_values() -> None:
    line = TextFormatter().format(_record("job.created", job_id="job_1", provider="upsampler"))
    assert "job.created" in line
    assert "job_id=job_1" in line
    assert "provider=upsampler" in line


def test_a_secret_in_extras_is_masked_by_its_repr() -> None:
    line = TextFormatter().format(_record("config", api_key=Secret("sk-live-123")))
    assert "sk-live-123" not in line
    data = json.loads(JsonFormatter().format(_record("config", api_key=Secret("sk-live-123"))))
    assert "sk-live-123" not in json.dumps(data)


# --- settings --------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.data_dir == Path("data")
    assert settings.poll_grace_s == 20.0
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.providers["upsampler"].sandboxed
    assert settings.providers["upsampler"].verify_callbacks is False


def test_api_key_never_shows_in_repr_or_str() -> None:
    settings = load_settings(
        {
            "UPSCALE_UPSAMPLER_API_KEY": "sk-secret",
            "UPSCALE_API_TOKENS": "api-tok-1,api-tok-2",
            "UPSCALE_SECRET_KEYS": "sign-key-1",
        }
    )
    for text in (repr(settings), str(settings), repr(settings.providers)):
        assert "sk-secret" not in text
        assert "api-tok-1" not in text and "api-tok-2" not in text
        assert "sign-key-1" not in text
    # The values are still there for the code that needs them.
    key = settings.providers["upsampler"].api_key
    assert key is not None and key.reveal() == "sk-secret"
    assert not settings.providers["upsampler"].sandboxed
    assert [t.reveal() for t in settings.api_tokens] == ["api-tok-1", "api-tok-2"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("UPSCALE_POLL_GRACE_S", "abc"),
        ("UPSCALE_POLL_GRACE_S", "-1"),
        ("UPSCALE_POLL_CAP_S", "-0.5"),
        ("UPSCALE_MAX_UPLOAD_BYTES", "lots"),
        ("UPSCALE_MAX_CALLBACK_BYTES", "-10"),
        ("UPSCALE_UPSAMPLER_SUBMITS_PER_MIN", "ten"),
        ("UPSCALE_WORKER_CONCURRENCY", "-4"),
    ],
)
def test_invalid_numbers_raise_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_settings({name: value})


def test_numbers_are_parsed() -> None:
    settings = load_settings(
        {
            "UPSCALE_POLL_GRACE_S": "2.5",
            "UPSCALE_MAX_UPLOAD_BYTES": "1000",
            "UPSCALE_MAX_CALLBACK_BYTES": "",
            "UPSCALE_WORKER_CONCURRENCY": "0",
        }
    )
    assert settings.poll_grace_s == 2.5
    assert settings.max_upload_bytes == 1000
    assert settings.max_callback_bytes == 1024 * 1024  # empty means default
    assert settings.worker_concurrency == 1  # never less than one worker


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_parsing(raw: str, expected: bool) -> None:
    settings = load_settings({"UPSCALE_UPSAMPLER_VERIFY_CALLBACKS": raw})
    assert settings.providers["upsampler"].verify_callbacks is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "truee"])
def test_invalid_boolean_raises_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="UPSCALE_UPSAMPLER_VERIFY_CALLBACKS"):
        load_settings({"UPSCALE_UPSAMPLER_VERIFY_CALLBACKS": raw})


def test_database_path_follows_the_data_dir_and_refuses_other_urls(tmp_path: Path) -> None:
    settings = load_settings({"UPSCALE_DATA_DIR": str(tmp_path)})
    assert settings.database_path == tmp_path / "upscale.db"
    explicit = load_settings({"UPSCALE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert explicit.database_path == tmp_path / "x.db"
    other = load_settings({"UPSCALE_DATABASE_URL": "postgres://db/upscale"})
    with pytest.raises(ValueError, match="UPSCALE_DATABASE_URL"):
        _ = other.database_path


def test_json_formatter_scrubs_nested_values() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.body = {"webhook": "https://h.test/callbacks/upsampler/eyJw.SIG"}
    record.hops = ["https://h.test/inputs/eyJrIjoi.SIG"]
    line = JsonFormatter().format(record)
    assert "eyJw.SIG" not in line and "eyJrIjoi.SIG" not in line
    assert "[redacted]" in line


def test_sqlite_durability_is_normal_unless_full_is_asked_for() -> None:
    assert load_settings({}).sqlite_synchronous == "NORMAL"
    assert load_settings({"UPSCALE_SQLITE_SYNCHRONOUS": "full"}).sqlite_synchronous == "FULL"
    with pytest.raises(ValueError, match="UPSCALE_SQLITE_SYNCHRONOUS must be one of"):
        load_settings({"UPSCALE_SQLITE_SYNCHRONOUS": "OFF"})


def test_a_new_database_where_one_existed_is_allowed_only_when_told() -> None:
    assert load_settings({}).allow_new_database is False
    assert load_settings({"UPSCALE_ALLOW_NEW_DATABASE": "1"}).allow_new_database is True
    with pytest.raises(ValueError, match="UPSCALE_ALLOW_NEW_DATABASE must be true or false"):
        load_settings({"UPSCALE_ALLOW_NEW_DATABASE": "maybe"})
