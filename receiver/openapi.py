"""The OpenAPI document for what the routes accept (kept in step by a test)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.providers.registry import PROVIDER_NAMES
from schemas.jobs import JobState, Operation

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


_ERRORS = {
    "400": _answer("Invalid request", _ERROR),
    "401": _answer("Missing or unknown API token", _ERROR),
}
_RETRY_HEADER: dict[str, Any] = {
    "headers": {
        "Retry-After": {
            "required": True,
            "description": "Seconds to wait before trying again",
            "schema": {"type": "string"},
        }
    }
}
_RETRY_LATER = {**_answer("The store is unavailable; retry", _ERROR), **_RETRY_HEADER}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_OPERATIONS = [o.value for o in Operation]
_OPERATION = {
    "type": "string",
    "enum": _OPERATIONS,
    "default": "upscale",
    "description": "upscale (the default), or replace: repaint the mask's white area "
    "from the prompt. The provider must offer it (GET /v1/providers)",
}
_PROMPT = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1000,
    # Text, tabs and line breaks: no other control character.
    "pattern": r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$",
    "description": "replace only, required: what to paint in the masked area",
}
_SCALE_NOTE = "upscale only (refused for replace)"
_PROVIDERS = {
    "type": "object",
    "required": ["providers"],
    "properties": {
        "providers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "mode"],
                "properties": {
                    "name": {"type": "string"},
                    "mode": {"type": "string", "enum": ["live", "sandbox", "unavailable"]},
                    "callbacks": {"type": "string", "enum": ["job", "account", "none"]},
                    "operations": {
                        "type": "array",
                        "items": {"type": "string", "enum": _OPERATIONS},
                        "description": "What jobs for this provider may ask",
                    },
                    "reason": {"type": "string", "description": "Why it is unavailable"},
                },
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Upscale orchestrator", "version": "0.1.0"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "request_id": {
                                "type": "string",
                                "description": "On a 500: quote it; it matches one log line",
                            },
                        },
                        "required": ["code", "message"],
                    }
                },
                "required": ["error"],
            },
            "CreateJob": {
                "type": "object",
                "required": ["provider", "image"],
                "properties": {
                    "provider": {"type": "string", "enum": list(PROVIDER_NAMES)},
                    "providers": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(PROVIDER_NAMES)},
                        "description": "Instead of provider: the providers to try in order "
                        "(each once); options are then given per provider",
                    },
                    "route": {
                        "type": "string",
                        "description": "Instead of provider: a route named in UPSCALE_ROUTES",
                    },
                    "max_cost": {
                        "type": "number",
                        "minimum": 0,
                        "description": "Credits the job may spend over all its attempts",
                    },
                    "operation": _OPERATION,
                    "image": {
                        "type": "string",
                        "description": "An http(s) URL, a data URI or bare base64 image data "
                        "(replace: a data URI or base64 only)",
                    },
                    "prompt": _PROMPT,
                    "mask": {
                        "type": "string",
                        "description": "replace only, required: a data URI or base64 image of "
                        "the image's size; white (luminance >= 128) marks the area to replace",
                    },
                    "scale": {
                        "type": "number",
                        "minimum": 1,
                        "maximum": 16,
                        "default": 2,
                        "description": _SCALE_NOTE,
                    },
                    "options": {
                        "type": "object",
                        "description": "Provider options, e.g. Upsampler's endpoint "
                        "(smart, dynamic, precise) and its documented input fields",
                    },
                    "metadata": {"description": "Any JSON, returned untouched"},
                    "webhook_url": {
                        "type": "string",
                        "description": "Receives this job's events as signed webhooks "
                        "(Standard Webhooks); the answer carries the signing secret",
                    },
                },
            },
            "CreateJobUpload": {
                "type": "object",
                "required": ["provider", "image"],
                "properties": {
                    "provider": {"type": "string"},
                    "providers": {"type": "string", "description": "names split by commas"},
                    "route": {"type": "string"},
                    "max_cost": {"type": "string", "description": "credits"},
                    "operation": _OPERATION,
                    "image": {"type": "string", "format": "binary"},
                    "prompt": _PROMPT,
                    "mask": {
                        "type": "string",
                        "format": "binary",
                        "description": "replace only, required: an image of the image's size",
                    },
                    "scale": {"type": "string", "description": _SCALE_NOTE},
                    "options": {"type": "string", "description": "JSON object"},
                    "metadata": {"type": "string", "description": "JSON"},
                    "webhook_url": {"type": "string"},
                },
            },
            "Job": {
                "type": "object",
                "required": [
                    "id",
                    "provider",
                    "operation",
                    "state",
                    "provider_job_id",
                    "created_at",
                    "updated_at",
                    "metadata",
                    "failure",
                    "result",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "provider": {"type": "string"},
                    "operation": {"type": "string", "enum": _OPERATIONS},
                    "prompt": {"type": "string", "description": "A replace job's prompt"},
                    "state": {
                        "type": "string",
                        "enum": [
                            "queued",
                            "submitting",
                            "submitted",
                            "fetching",
                            "succeeded",
                            "failed",
                            "uncertain",
                            "cancelled",
                        ],
                    },
                    "scale": {"type": "number"},
                    "options": {"type": "object"},
                    "provider_job_id": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "deadline_at": {"type": "string", "format": "date-time"},
                    "metadata": {},
                    "cost": {"type": ["number", "null"]},
                    "retry_of": {
                        "type": ["string", "null"],
                        "description": "The job this one retries",
                    },
                    "route": {
                        "type": "object",
                        "properties": {
                            "name": {"type": ["string", "null"]},
                            "providers": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "max_cost": {"type": ["number", "null"]},
                    "attempts": {
                        "type": "array",
                        "description": "Each provider's go at the job, oldest first; the "
                        "last is the current one",
                        "items": {"type": "object"},
                    },
                    "failure": {
                        "type": ["object", "null"],
                        "properties": {
                            "reason": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                    "result": {
                        "type": ["object", "null"],
                        "properties": {
                            "url": {"type": "string"},
                            "content_type": {"type": "string"},
                            "bytes": {"type": "integer"},
                            "sha256": {"type": "string"},
                            "width": {"type": "integer"},
                            "height": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
    "paths": {
        "/v1/jobs": {
            "post": {
                "summary": "Create a job",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/CreateJob"}},
                        "multipart/form-data": {
                            "schema": {"$ref": "#/components/schemas/CreateJobUpload"}
                        },
                    },
                },
                "responses": {
                    "202": _answer("Job accepted", _JOB),
                    "200": _answer("Same Idempotency-Key and body: the existing job", _JOB),
                    "409": _answer("Idempotency-Key reused with another body", _ERROR),
                    "413": _answer("Image too large", _ERROR),
                    "429": {**_answer("Too many uploads at once; retry", _ERROR), **_RETRY_HEADER},
                    **_ERRORS,
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in JobState]},
                    },
                    {"name": "provider", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "operation",
                        "in": "query",
                        "schema": {"type": "string", "enum": _OPERATIONS},
                    },
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Created in the last e.g. 2h",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": {"200": _answer("A page of jobs"), **_ERRORS},
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "One job",
                "security": _SECURED,
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _answer("The job", _JOB),
                    "404": _answer("No such job", _ERROR),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Cancel a job that has not finished",
                "security": _SECURED,
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _answer("The cancelled job", _JOB),
                    "404": _answer("No such job", _ERROR),
                    **_ERRORS,
                },
            },
        },
        "/v1/jobs/{job_id}/history": {
            "get": {
                "summary": "The job's state transitions",
                "security": _SECURED,
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _answer("Transitions, oldest first"),
                    "404": _answer("No such job", _ERROR),
                    **_ERRORS,
                },
            }
        },
        "/v1/jobs/{job_id}/result": {
            "get": {
                "summary": "The stored result image",
                "security": _SECURED,
                "parameters": [_JOB_ID],
                "responses": {
                    "200": {
                        "description": "The image",
                        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": _answer("No stored result", _ERROR),
                    **_ERRORS,
                },
            }
        },
        "/callbacks/{provider}/{token}": {
            "post": {
                "summary": "Provider webhook (URL handed to the provider, token signed by us)",
                "parameters": [
                    {
                        "name": "provider",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": _answer("Stored"),
                    "403": _answer("Source address not on the provider's list", _ERROR),
                    "404": _answer("Unknown, expired or foreign token", _ERROR),
                    "413": _answer("Body over the cap", _ERROR),
                    "503": _RETRY_LATER,
                },
            }
        },
        "/inputs/{token}": {
            "get": {
                "summary": "An uploaded input image, for the provider to download",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The image"},
                    "404": _answer("Unknown or expired token", _ERROR),
                },
            }
        },
        "/v1/providers": {
            "get": {
                "summary": "Providers, whether each is live or sandboxed, and the operations "
                "each offers",
                "security": _SECURED,
                "responses": {"200": _answer("The providers", _PROVIDERS), **_ERRORS},
            }
        },
        "/v1/providers/{provider}/balance": {
            "get": {
                "summary": "The provider account's remaining credit (where the provider tells)",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "provider",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _answer("The balance"),
                    "404": _answer("No such provider", _ERROR),
                    "502": _answer("The provider did not answer", _ERROR),
                    **_ERRORS,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "security": _SECURED,
                "responses": {"200": {"description": "text/plain; version=0.0.4"}, **_ERRORS},
            }
        },
        "/healthz": {"get": {"summary": "Process is up", "responses": {"200": _answer("Up")}}},
        "/readyz": {
            "get": {
                "summary": "Store reachable",
                "responses": {
                    "200": _answer("Ready"),
                    "503": {**_answer("Store unavailable"), **_RETRY_HEADER},
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _answer("OpenAPI 3.1")}}
        },
    },
}

_EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SUB_ID = {"name": "subscription_id", "in": "path", "required": True, "schema": {"type": "string"}}
_TYPES = {
    "name": "type",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Event types, comma-separated",
}

EVENT_PATHS: dict[str, Any] = {
    "/v1/events": {
        "get": {
            "summary": "Events after a cursor, oldest first",
            "security": _SECURED,
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                _TYPES,
            ],
            "responses": {"200": _answer("A page of events and the next cursor"), **_ERRORS},
        }
    },
    "/v1/events/stream": {
        "get": {
            "summary": "Live events as Server-Sent Events; resume with Last-Event-ID",
            "security": _SECURED,
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                _TYPES,
            ],
            "responses": {"200": {"description": "text/event-stream"}, **_ERRORS},
        }
    },
    "/v1/events/{event_id}": {
        "get": {
            "summary": "One event",
            "security": _SECURED,
            "parameters": [_EVENT_ID],
            "responses": {
                "200": _answer("The event"),
                "404": _answer("No such event", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/events/{event_id}/redeliver": {
        "post": {
            "summary": "Send an event again, to one subscription or to all it went to",
            "security": _SECURED,
            "parameters": [_EVENT_ID],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"subscription_id": {"type": "string"}},
                        }
                    }
                }
            },
            "responses": {
                "202": _answer("Queued"),
                "404": _answer("No such event", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/subscriptions": {
        "post": {
            "summary": "Subscribe a URL to events (signed per Standard Webhooks)",
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["url"],
                            "properties": {
                                "url": {"type": "string"},
                                "types": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    }
                },
            },
            "responses": {"201": _answer("The subscription with its whsec_ secret"), **_ERRORS},
        },
        "get": {
            "summary": "Subscriptions",
            "security": _SECURED,
            "responses": {"200": _answer("The subscriptions"), **_ERRORS},
        },
    },
    "/v1/subscriptions/{subscription_id}": {
        "get": {
            "summary": "One subscription",
            "security": _SECURED,
            "parameters": [_SUB_ID],
            "responses": {
                "200": _answer("The subscription"),
                "404": _answer("No such subscription", _ERROR),
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Remove a subscription and its pending deliveries",
            "security": _SECURED,
            "parameters": [_SUB_ID],
            "responses": {
                "204": {"description": "Removed"},
                "404": _answer("No such subscription", _ERROR),
                **_ERRORS,
            },
        },
    },
    "/v1/subscriptions/{subscription_id}/secret": {
        "post": {
            "summary": "A new signing secret; the old one keeps signing for grace_s seconds",
            "security": _SECURED,
            "parameters": [_SUB_ID],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": {"grace_s": {"type": "number"}}}
                    }
                }
            },
            "responses": {
                "200": _answer("The subscription with its new secret"),
                "404": _answer("No such subscription", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/subscriptions/{subscription_id}/enable": {
        "post": {
            "summary": "Enable a subscription disabled after too many failures",
            "security": _SECURED,
            "parameters": [_SUB_ID],
            "responses": {
                "200": _answer("The subscription"),
                "404": _answer("No such subscription", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/subscriptions/{subscription_id}/deliveries": {
        "get": {
            "summary": "Deliveries to a subscription, with every attempt and its error",
            "security": _SECURED,
            "parameters": [
                _SUB_ID,
                {"name": "status", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _answer("The deliveries"),
                "404": _answer("No such subscription", _ERROR),
                **_ERRORS,
            },
        }
    },
}
DOCUMENT["paths"].update(EVENT_PATHS)

_DELIVERY_ID = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}}
_DELIVERY_STATUSES = ["pending", "applied", "duplicate", "unmatched", "dead"]
_JOB_STATES = [
    "queued",
    "submitting",
    "submitted",
    "fetching",
    "succeeded",
    "failed",
    "uncertain",
    "cancelled",
]


def _body(properties: dict[str, Any]) -> dict[str, Any]:
    """An optional JSON object body with these fields and no others."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"content": {"application/json": {"schema": schema}}}


OPERATION_PATHS: dict[str, Any] = {
    "/v1/deliveries": {
        "get": {
            "summary": "Stored callback deliveries, newest first",
            "security": _SECURED,
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": "string"}}
                for n in ("status", "provider", "since", "job_id", "limit")
            ],
            "responses": {"200": _answer("Deliveries"), **_ERRORS},
        }
    },
    "/v1/deliveries/replay": {
        "post": {
            "summary": "Replay every delivery of a status (default dead) since a time; "
            'with no filter only with "all": true',
            "security": _SECURED,
            "requestBody": _body(
                {
                    "status": {"type": "string", "enum": _DELIVERY_STATUSES},
                    "since": {"type": "string", "description": "e.g. 24h"},
                    "provider": {"type": "string", "enum": list(PROVIDER_NAMES)},
                    "all": {"type": "boolean"},
                }
            ),
            "responses": {"200": _answer("What each replay did"), **_ERRORS},
        }
    },
    "/v1/deliveries/{delivery_id}": {
        "get": {
            "summary": "One delivery: headers, body, match, what it changed, errors",
            "security": _SECURED,
            "parameters": [_DELIVERY_ID],
            "responses": {
                "200": _answer("The delivery"),
                "404": _answer("No such delivery", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/deliveries/{delivery_id}/replay": {
        "post": {
            "summary": "Run a stored delivery through parse, match and apply again",
            "security": _SECURED,
            "parameters": [_DELIVERY_ID],
            "responses": {
                "200": _answer("What the replay did"),
                "404": _answer("No such delivery", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/inject/{provider}": {
        "post": {
            "summary": "Inject a callback captured elsewhere (all checks but the URL token)",
            "security": _SECURED,
            "parameters": [
                {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "job_id", "in": "query", "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {"201": _answer("Stored and processed"), **_ERRORS},
        }
    },
    "/v1/reconcile": {
        "post": {
            "summary": "Ask providers now about stuck jobs, or jobs since a time or in a state; "
            'every unfinished job only with "all": true',
            "security": _SECURED,
            "requestBody": _body(
                {
                    "stuck": {"type": "boolean"},
                    "since": {"type": "string", "description": "e.g. 2h"},
                    "state": {"type": "string", "enum": _JOB_STATES},
                    "dry_run": {"type": "boolean"},
                    "all": {"type": "boolean"},
                }
            ),
            "responses": {
                "202": {
                    "description": (
                        "Queued; answered at once. Newline-delimited JSON: first "
                        "{dry_run, queued: [job ids]}, then {result: ...} per job as its "
                        "status call (within the provider's status budget) comes back, "
                        "then {done: n}"
                    ),
                    "content": {"application/x-ndjson": {"schema": {"type": "object"}}},
                },
                **_ERRORS,
            },
        }
    },
    "/v1/stuck": {
        "get": {
            "summary": "Submitted jobs past their expected duration",
            "security": _SECURED,
            "responses": {"200": _answer("Stuck jobs"), **_ERRORS},
        }
    },
    "/v1/jobs/{job_id}/reconcile": {
        "post": {
            "summary": "Ask the provider about one job now (?dry_run=1 changes nothing)",
            "security": _SECURED,
            "parameters": [
                _JOB_ID,
                {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}},
            ],
            "responses": {
                "200": _answer("The transition"),
                "404": _answer("No such job", _ERROR),
                **_ERRORS,
            },
        }
    },
    "/v1/jobs/{job_id}/retry": {
        "post": {
            "summary": "A new job from a failed or uncertain one (uncertain: confirm_uncertain)",
            "security": _SECURED,
            "parameters": [_JOB_ID],
            "requestBody": _body({"confirm_uncertain": {"type": "boolean"}}),
            "responses": {
                "202": _answer("The new job", _JOB),
                "404": _answer("No such job", _ERROR),
                **_ERRORS,
            },
        }
    },
}
DOCUMENT["paths"].update(OPERATION_PATHS)


def _add_error_answers(document: dict[str, Any]) -> None:
    """The errors every operation can give, from what it takes: a token (401, and
    503 when the store is down), a body (400, 413), parameters (400), path ids (404)."""
    for item in document["paths"].values():
        for operation in item.values():
            responses = operation["responses"]
            parameters = operation.get("parameters", [])
            if "security" in operation:
                responses.setdefault("401", _ERRORS["401"])
                responses.setdefault("503", _RETRY_LATER)
            if "requestBody" in operation:
                responses.setdefault("400", _ERRORS["400"])
                responses.setdefault("413", _answer("Body over the cap", _ERROR))
            if any(p["in"] in ("query", "header") for p in parameters):
                responses.setdefault("400", _ERRORS["400"])
            if any(p["in"] == "path" for p in parameters):
                responses.setdefault("404", _answer("Not found", _ERROR))


_add_error_answers(DOCUMENT)


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
