"""Every console route, collected from one module per page.

A page module (``overview.py``, ``jobs.py``, ...) defines ``routes: list[BaseRoute]``
with paths relative to ``/console`` and handlers that take the request; the guard
(``guard.py``) has already checked the session, the origin and the CSRF token of
anything that is not a GET, so a handler only renders (``pages.render``) or acts
through the orchestrator's verbs. To add a page: write its module, import it below
and add its ``routes`` to ``ROUTES`` (one line each), and add its template(s) under
``templates/`` extending ``base.html``. A form that changes something carries
``<input type="hidden" name="csrf" value="{{ csrf }}">``; a multipart upload also
lists its path in ``UPLOAD_PATHS`` and checks the token itself.

Live updates: an element with ``data-live="<url>"`` is re-fetched (HTML) by
``static/console.js`` whenever the event stream (``/console/live``) says something
happened; ``data-live-events="<list id>"`` appends each event to a list.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from receiver.console import (
    events,
    images,
    inbox,
    job_actions,
    jobs,
    live,
    overview,
    providers,
    signin,
    submit,
    subscriptions,
)

ROUTES: list[BaseRoute] = [
    *signin.routes,
    *overview.routes,
    *submit.routes,  # /jobs/new before /jobs/{job_id}
    *jobs.routes,
    *job_actions.routes,
    *images.routes,
    *providers.routes,
    *live.routes,
    *inbox.routes,
    *events.routes,
    *subscriptions.routes,
]

# Paths (regular expressions, relative to /console) whose multipart handler checks
# the CSRF token from the form itself.
UPLOAD_PATHS: tuple[str, ...] = (*submit.UPLOAD_PATHS,)
