"""``upscale submit --provider a,b,c`` / ``--route`` and ``upscale jobs show`` with attempts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.cli.main import build_parser
from orchestrator.cli.output import print_job
from orchestrator.cli.submit import _parse_options, _submit_one, per_provider, route_fields


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["submit", "https://in.test/a.png", *argv])


def _sent(args: Any) -> dict[str, Any]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(202, json={"id": "job_1", "state": "queued"})

    with httpx.Client(base_url="http://svc.test", transport=httpx.MockTransport(answer)) as c:
        _submit_one(c, args, "https://in.test/a.png", {})
    body: dict[str, Any] = json.loads(seen[0].content)
    return body


def test_several_providers_are_sent_as_an_ordered_route() -> None:
    body = _sent(_args("--provider", "upsampler,fotor,local", "--max-cost", "4"))
    assert body["providers"] == ["upsampler", "fotor", "local"] and body["max_cost"] == 4
    assert "provider" not in body


def test_a_named_route_and_a_single_provider() -> None:
    assert _sent(_args("--route", "cheap"))["route"] == "cheap"
    assert _sent(_args("--provider", "local"))["provider"] == "local"
    assert route_fields(_args("--provider", "a,b"), form=True)["providers"] == "a,b"


def test_route_options_name_their_provider() -> None:
    options = _parse_options(["fotor.size=2", "upsampler.endpoint=precise"])
    assert per_provider(options) == {"fotor": {"size": 2}, "upsampler": {"endpoint": "precise"}}
    with pytest.raises(SystemExit, match=r"PROVIDER\.size"):
        per_provider({"size": 2})


def test_jobs_show_prints_the_route_and_each_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    job = {
        "id": "job_1",
        "provider": "fotor",
        "state": "submitted",
        "provider_job_id": "fo-1",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:01:00Z",
        "route": {"name": "default", "providers": ["upsampler", "fotor"]},
        "attempts": [
            {
                "number": 1,
                "provider": "upsampler",
                "state": "failed",
                "provider_job_id": None,
                "failure": {"reason": "insufficient_credit", "message": "x"},
                "cost": None,
            },
            {"number": 2, "provider": "fotor", "state": "submitted", "provider_job_id": "fo-1"},
        ],
    }
    print_job(job, as_json=False)
    out = capsys.readouterr().out
    assert "route         upsampler,fotor (default)" in out
    assert "attempt 1     upsampler failed insufficient_credit -" in out
    assert "attempt 2     fotor submitted fo-1" in out
