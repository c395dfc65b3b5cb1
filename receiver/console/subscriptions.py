"""Outbound subscriptions: the list, one subscription's deliveries with every attempt
(status code, error, duration), redeliver, enable, add, remove, and rotating the
signing secret.

A new secret (of a new subscription, or rotated) is shown once: in the answer to
the form that made it, which no cache keeps (the guard sends ``no-store``); no page
that a GET reaches shows it again. The same verbs as the JSON API's
``/v1/subscriptions`` routes.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.common.ids import new_id
from orchestrator.domain.events import EVENT_TYPES, event_seq
from orchestrator.outbound.subscriptions import current_secret, new_subscription, rotated
from orchestrator.service.runtime import Runtime
from orchestrator.store.outbox import Subscription
from receiver.console.pages import BASE, render, runtime_of
from receiver.intake import check_webhook_url
from schemas.errors import NotFound, RejectedInput

SHOWN_DELIVERIES = 50
GRACE_CHOICES = ((0, "none: the old secret stops now"), (3600, "1 hour"), (86400, "1 day"))
NOTES = {
    "enabled": "Enabled: deliveries resume.",
    "redelivered": "Queued again for this subscription.",
    "removed": "The subscription was removed.",
}


async def _subscription(runtime: Runtime, subscription_id: str) -> Subscription:
    sub = None
    if len(subscription_id) <= 64:
        sub = await runtime.store.get_subscription(subscription_id)
    if sub is None:
        raise NotFound("no such subscription")
    return sub


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=len(EVENT_TYPES) + 8)


def _note(request: Request) -> str:
    return NOTES.get(request.query_params.get("note") or "", "")


async def list_subscriptions(request: Request) -> Response:
    runtime = runtime_of(request)
    with_hooks = request.query_params.get("hooks") == "1"
    subs = await runtime.store.list_subscriptions(include_job_hooks=with_hooks)
    values = {
        "subscriptions": subs,
        "types": EVENT_TYPES,
        "with_hooks": with_hooks,
        "flash": _note(request),
    }
    return render(request, "subscriptions.html", values, page="subscriptions")


async def add(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await _form(request)
    url = str(form.get("url") or "").strip()
    types = [str(t) for t in form.getlist("types")] or None
    now = runtime.orchestrator.clock.now()
    try:
        await check_webhook_url(runtime, url)
        sub = new_subscription(new_id("sub", now), url, types, now=now)
    except RejectedInput as exc:
        subs = await runtime.store.list_subscriptions()
        values = {
            "subscriptions": subs,
            "types": EVENT_TYPES,
            "with_hooks": False,
            "error": exc.message,
            "typed_url": url,
            "flash": "",
        }
        return render(request, "subscriptions.html", values, page="subscriptions", status_code=400)
    await runtime.store.create_subscription(sub)
    return _secret_once(request, sub, current_secret(sub), created=True)


def _secret_once(request: Request, sub: Subscription, secret: str, *, created: bool) -> Response:
    values = {"subscription": sub, "secret": secret, "created": created}
    return render(request, "subscription_secret.html", values, page="subscriptions")


async def show(request: Request) -> Response:
    runtime = runtime_of(request)
    sub = await _subscription(runtime, request.path_params["subscription_id"])
    records = await runtime.store.list_outbound(subscription_id=sub.id, limit=SHOWN_DELIVERIES)
    deliveries: list[dict[str, Any]] = [
        {"record": r, "attempts": await runtime.store.attempts(r.id)} for r in records
    ]
    now = runtime.orchestrator.clock.now()
    values = {
        "subscription": sub,
        "deliveries": deliveries,
        "shown": SHOWN_DELIVERIES,
        "secrets": [
            {"current": s.expires_at is None, "expires_at": s.expires_at}
            for s in sub.secrets
            if s.expires_at is None or s.expires_at > now
        ],
        "grace_choices": GRACE_CHOICES,
        "flash": _note(request),
    }
    return render(request, "subscription.html", values, page="subscriptions")


async def rotate(request: Request) -> Response:
    runtime = runtime_of(request)
    sub = await _subscription(runtime, request.path_params["subscription_id"])
    form = await _form(request)
    grace = {str(seconds): seconds for seconds, _ in GRACE_CHOICES}.get(
        str(form.get("grace_s") or "0")
    )
    if grace is None:
        raise RejectedInput("grace: choose one of the offered periods")
    fresh, secret = rotated(sub, now=runtime.orchestrator.clock.now(), grace_s=grace)
    await runtime.store.set_subscription_secrets(sub.id, fresh.secrets)
    return _secret_once(request, fresh, secret, created=False)


async def enable(request: Request) -> Response:
    runtime = runtime_of(request)
    sub = await _subscription(runtime, request.path_params["subscription_id"])
    await runtime.store.enable_subscription(sub.id)
    return RedirectResponse(f"{BASE}/subscriptions/{sub.id}?note=enabled", status_code=303)


async def remove(request: Request) -> Response:
    runtime = runtime_of(request)
    sub = await _subscription(runtime, request.path_params["subscription_id"])
    await runtime.store.delete_subscription(sub.id, now=runtime.orchestrator.clock.now())
    return RedirectResponse(f"{BASE}/subscriptions?note=removed", status_code=303)


async def redeliver(request: Request) -> Response:
    """One event again, to this subscription."""
    runtime = runtime_of(request)
    sub = await _subscription(runtime, request.path_params["subscription_id"])
    form = await _form(request)
    raw = str(form.get("event_id") or "")
    seq = event_seq(raw) if len(raw) <= 64 else None
    if seq is None or await runtime.store.get_event(seq) is None:
        raise NotFound("no such event")
    await runtime.store.redeliver(seq, now=runtime.orchestrator.clock.now(), subscription_id=sub.id)
    return RedirectResponse(f"{BASE}/subscriptions/{sub.id}?note=redelivered", status_code=303)


routes: list[BaseRoute] = [
    Route("/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/subscriptions", add, methods=["POST"]),
    Route("/subscriptions/{subscription_id}", show, methods=["GET"]),
    Route("/subscriptions/{subscription_id}/secret", rotate, methods=["POST"]),
    Route("/subscriptions/{subscription_id}/enable", enable, methods=["POST"]),
    Route("/subscriptions/{subscription_id}/remove", remove, methods=["POST"]),
    Route("/subscriptions/{subscription_id}/redeliver", redeliver, methods=["POST"]),
]
