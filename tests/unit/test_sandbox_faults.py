"""Unit tests for the sandbox fault settings and stats counters."""

from __future__ import annotations

import random

import pytest

from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.stats import STANDARD_COUNTERS, Stats


def test_defaults() -> None:
    faults = Faults()
    values = faults.as_dict()
    assert values["retry_after_s"] == 1.0
    assert values["submit_timeout_s"] == 30.0
    assert values["result_base_url"] == ""
    assert values["drop_callback"] == 0.0
    assert set(values) == {
        "corrupt_result",
        "data_uri_body",
        "delay_callback_s",
        "drop_callback",
        "duplicate_callback",
        "early_callback",
        "empty_result",
        "error_in_200",
        "expire_result",
        "no_credit",
        "nsfw",
        "processing_s",
        "progress_callbacks",
        "quota_per_day",
        "result_base_url",
        "retry_after_s",
        "s3_result",
        "status_429",
        "status_500",
        "status_in_body",
        "submit_429",
        "submit_500",
        "submit_timeout",
        "submit_timeout_s",
    }


def test_parse() -> None:
    faults = Faults.parse(" drop_callback=0.5, processing_s=2 ,result_base_url=http://x.test/ ")
    assert faults.drop_callback == 0.5
    assert faults.processing_s == 2.0
    assert faults.result_base_url == "http://x.test"
    assert faults.submit_429 == 0.0


@pytest.mark.parametrize("text", ["", " ", ",,"])
def test_parse_empty_gives_defaults(text: str) -> None:
    assert Faults.parse(text) == Faults()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope=1", "unknown fault 'nope'"),
        ("drop_callback", "name=value"),
        ("drop_callback=abc", "must be a number"),
        ("drop_callback=1.5", "between 0 and 1"),
        ("drop_callback=-0.1", "between 0 and 1"),
        ("processing_s=-1", ">= 0"),
        ("processing_s=nan", "finite"),
        ("retry_after_s=inf", "finite"),
        ("result_base_url=ftp://x", "http(s) URL"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Faults.parse(text)


def test_seconds_may_exceed_one() -> None:
    assert Faults.parse("delay_callback_s=12.5").delay_callback_s == 12.5


def test_update_from_json_object() -> None:
    faults = Faults()
    faults.update({"submit_429": 1, "retry_after_s": 3, "result_base_url": "https://evil.test"})
    assert faults.submit_429 == 1.0
    assert isinstance(faults.submit_429, float)
    assert faults.retry_after_s == 3.0
    assert faults.result_base_url == "https://evil.test"
    faults.update({"result_base_url": ""})
    assert faults.result_base_url == ""


@pytest.mark.parametrize(
    "values",
    [
        {"drop_callback": True},
        {"drop_callback": None},
        {"drop_callback": [0.5]},
        {"drop_callback": 2},
        {"unknown": 0.1},
        {"result_base_url": 5},
    ],
)
def test_update_rejects(values: dict[str, object]) -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.update(values)
    assert faults == Faults()


def test_update_is_all_or_nothing() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="status_500"):
        faults.update({"drop_callback": 0.3, "status_500": 7})
    assert faults.drop_callback == 0.0


def test_update_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        Faults().update([("drop_callback", 1)])  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Faults(drop_callback=3)


def test_roll_bounds() -> None:
    rng = random.Random(1)
    never = Faults()
    always = Faults(drop_callback=1.0)
    assert not any(never.roll("drop_callback", rng) for _ in range(200))
    assert all(always.roll("drop_callback", rng) for _ in range(200))


def test_roll_probability_is_seeded_and_roughly_right() -> None:
    faults = Faults(corrupt_result=0.25)
    rng_a, rng_b = random.Random(7), random.Random(7)
    first = [faults.roll("corrupt_result", rng_a) for _ in range(50)]
    again = [faults.roll("corrupt_result", rng_b) for _ in range(50)]
    assert first == again
    assert any(first)
    assert not all(first)
    rng = random.Random(42)
    hits = sum(faults.roll("corrupt_result", rng) for _ in range(4000))
    assert 800 < hits < 1200


@pytest.mark.parametrize("name", ["processing_s", "result_base_url", "unknown"])
def test_roll_rejects_non_probabilities(name: str) -> None:
    with pytest.raises(ValueError, match="not a probability"):
        Faults().roll(name, random.Random(0))


def test_copy_is_independent() -> None:
    faults = Faults(drop_callback=0.5)
    other = faults.copy()
    other.update({"drop_callback": 0})
    assert faults.drop_callback == 0.5


def test_stats_always_report_standard_counters() -> None:
    stats = Stats(["upsampler"])
    stats.register("fotor", extra=["callbacks_dropped"])
    stats.bump("upsampler", "submits")
    stats.bump("upsampler", "submits", 2)
    stats.bump("photio", "odd_counter")
    data = stats.as_dict()
    for provider in ("upsampler", "fotor", "photio"):
        assert set(STANDARD_COUNTERS) <= set(data[provider])
    assert data["upsampler"]["submits"] == 3
    assert data["upsampler"]["jobs_created"] == 0
    assert data["fotor"]["callbacks_dropped"] == 0
    assert data["photio"]["odd_counter"] == 1
    assert stats.get("upsampler", "submits") == 3
    assert stats.get("nobody", "submits") == 0
    stats.reset()
    assert stats.as_dict()["upsampler"]["submits"] == 0
    assert "odd_counter" in stats.as_dict()["photio"]
