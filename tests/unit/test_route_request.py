"""A job's route in the request: provider, providers or a named route, options per
provider, max_cost; and the UPSCALE_ROUTES and UPSCALE_SPEND_CAPS settings."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.api import parse_create_job
from schemas.errors import RejectedInput
from schemas.routes import parse_routes, parse_spend_caps

KNOWN = frozenset({"upsampler", "fotor", "local"})
ROUTES = {"default": ("upsampler", "fotor", "local"), "cheap": ("local",)}
IMAGE = "https://example.test/in.png"


def parse(**body: Any) -> Any:
    return parse_create_job({"image": IMAGE, **body}, known_providers=KNOWN, routes=ROUTES)


def test_one_provider_as_today() -> None:
    job = parse(provider="fotor", options={"a": 1})
    assert job.provider == "fotor" and job.route == ("fotor",) and job.route_name is None
    assert job.options == {"a": 1} and job.route_options == {"fotor": {"a": 1}}


def test_providers_as_a_list_or_names_split_by_commas() -> None:
    assert parse(providers=["fotor", "local"]).route == ("fotor", "local")
    job = parse(providers="upsampler, fotor,local")
    assert job.route == ("upsampler", "fotor", "local") and job.provider == "upsampler"


def test_a_named_route_and_the_default_one() -> None:
    job = parse(route="cheap")
    assert job.route == ("local",) and job.route_name == "cheap"
    assert parse().route_name == "default"


def test_without_a_default_route_a_provider_is_required() -> None:
    with pytest.raises(RejectedInput, match="provider must be one of"):
        parse_create_job({"image": IMAGE}, known_providers=KNOWN, routes={})


def test_options_per_provider_on_a_route() -> None:
    job = parse(providers=["upsampler", "fotor"], options={"fotor": {"x": 1}})
    assert job.route_options == {"upsampler": {}, "fotor": {"x": 1}}
    assert job.options == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"provider": "fotor", "providers": ["local"]}, "not several"),
        ({"route": "nope"}, "route must be one of: cheap, default"),
        ({"providers": ["fotor", "nope"]}, "'nope' is not one of"),
        ({"providers": ["fotor", "fotor"]}, "each provider may appear once"),
        ({"providers": []}, "list of 1 to 8"),
        ({"providers": [1]}, "is not one of"),
        ({"providers": ["fotor", "local"], "options": {"scale": 2}}, "given per provider"),
        ({"providers": ["fotor", "local"], "options": {"fotor": 2}}, "options.fotor must be"),
        ({"provider": "fotor", "max_cost": -1}, "must not be negative"),
        ({"provider": "fotor", "max_cost": "1"}, "number of credits"),
        ({"provider": "fotor", "max_cost": True}, "number of credits"),
    ],
)
def test_malformed_routes_are_refused_with_the_reason(body: dict[str, Any], message: str) -> None:
    with pytest.raises(RejectedInput, match=message):
        parse(**body)


def test_max_cost() -> None:
    assert parse(provider="fotor", max_cost=2.5).max_cost == 2.5


def test_routes_setting() -> None:
    assert parse_routes("default=upsampler,fotor,local; cheap=local", KNOWN) == ROUTES
    assert parse_routes("") == {}
    for bad in ("default", "x=", "x=a,a", "Bad Name=a", "x=a;x=b"):
        with pytest.raises(ValueError):
            parse_routes(bad)
    with pytest.raises(ValueError, match="unknown providers: nope"):
        parse_routes("x=fotor,nope", KNOWN)


def test_spend_caps_setting() -> None:
    assert parse_spend_caps("upsampler=100, fotor=50.5") == {"upsampler": 100, "fotor": 50.5}
    for bad in ("upsampler", "upsampler=x", "upsampler=-1", "upsampler=inf"):
        with pytest.raises(ValueError):
            parse_spend_caps(bad)
    with pytest.raises(ValueError, match="unknown provider"):
        parse_spend_caps("nope=1", KNOWN)
