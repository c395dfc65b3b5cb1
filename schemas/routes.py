"""A job's route in a request (``provider``, ``providers`` or a named ``route``,
options per provider, ``max_cost``) and the settings that name routes and spend
caps (``UPSCALE_ROUTES``, ``UPSCALE_SPEND_CAPS``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from schemas.errors import RejectedInput

MAX_ROUTE = 8
_ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def parse_route(
    body: dict[str, Any],
    known_providers: frozenset[str],
    routes: Mapping[str, tuple[str, ...]],
) -> tuple[tuple[str, ...], str | None]:
    """The providers a request asks for, in order, and the named route they came
    from: ``provider`` (one name, as always), ``providers`` (a list, or one string of
    names split by commas) or ``route`` (a name from ``UPSCALE_ROUTES``); with none,
    the route named ``default`` if one is configured."""
    given = [k for k in ("provider", "providers", "route") if body.get(k) is not None]
    names = ", ".join(sorted(known_providers))
    if len(given) > 1:
        raise RejectedInput("give one of provider, providers and route, not several")
    if not given and "default" not in routes:
        raise RejectedInput(f"provider must be one of: {names}")
    key = given[0] if given else "route"
    value = body.get(key) if given else "default"
    if key == "route":
        if not isinstance(value, str) or value not in routes:
            known = ", ".join(sorted(routes)) or "none are configured (UPSCALE_ROUTES)"
            raise RejectedInput(f"route must be one of: {known}")
        return routes[value], value
    if key == "provider":
        if not isinstance(value, str) or value not in known_providers:
            raise RejectedInput(f"provider must be one of: {names}")
        return (value,), None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not value or len(value) > MAX_ROUTE:
        raise RejectedInput(f"providers must be a list of 1 to {MAX_ROUTE} provider names")
    for name in value:
        if not isinstance(name, str) or name not in known_providers:
            shown = name if isinstance(name, str) and len(name) <= 64 else "?"
            raise RejectedInput(f"providers: {shown!r} is not one of: {names}")
    if len(set(value)) != len(value):
        raise RejectedInput("providers: each provider may appear once")
    return tuple(value), None


def per_provider_options(
    options: dict[str, Any], route: tuple[str, ...], *, named: bool
) -> dict[str, dict[str, Any]]:
    """Options per provider: a single provider's flat options, or (for a route of
    several, or a named one) an object keyed by provider."""
    if len(route) == 1 and not named:
        return {route[0]: dict(options)}
    out: dict[str, dict[str, Any]] = {name: {} for name in route}
    for name, value in options.items():
        if name not in out:
            raise RejectedInput(
                f"options for a route are given per provider, as"
                f' {{"{route[0]}": {{...}}}}; {str(name)[:64]!r} is not on the route'
            )
        if not isinstance(value, dict):
            raise RejectedInput(f"options.{name} must be a JSON object")
        out[name] = dict(value)
    return out


def parse_max_cost(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RejectedInput("max_cost must be a number of credits")
    if value < 0:
        raise RejectedInput("max_cost must not be negative")
    return float(value)


def parse_routes(text: str, known: frozenset[str] | None = None) -> dict[str, tuple[str, ...]]:
    """``UPSCALE_ROUTES``: ``name=provider,provider;name=provider`` (ValueError if
    malformed; with ``known``, every provider must be one of them)."""
    out: dict[str, tuple[str, ...]] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        name, sep, providers = item.partition("=")
        name = name.strip()
        if not sep or not _ROUTE_NAME.match(name):
            raise ValueError(f"route {item.strip()!r} must look like name=provider,provider")
        chosen = tuple(p.strip() for p in providers.split(",") if p.strip())
        if not chosen or len(set(chosen)) != len(chosen) or len(chosen) > MAX_ROUTE:
            raise ValueError(f"route {name!r} must name 1 to {MAX_ROUTE} distinct providers")
        if known is not None:
            unknown = [p for p in chosen if p not in known]
            if unknown:
                raise ValueError(f"route {name!r} names unknown providers: {', '.join(unknown)}")
        if name in out:
            raise ValueError(f"route {name!r} is given twice")
        out[name] = chosen
    return out


def parse_spend_caps(text: str, known: frozenset[str] | None = None) -> dict[str, float]:
    """``UPSCALE_SPEND_CAPS``: ``provider=credits,provider=credits`` (ValueError if
    malformed)."""
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            cap = float(value) if sep else math.nan
        except ValueError:
            cap = math.nan
        if not math.isfinite(cap) or cap < 0:
            raise ValueError(f"spend cap {item.strip()!r} must look like provider=credits")
        if known is not None and name not in known:
            raise ValueError(f"spend cap for unknown provider {name!r}")
        out[name] = cap
    return out
