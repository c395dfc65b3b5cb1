"""What the sandbox's Fotor API answers and sends: the envelope, task details, webhook body.

Pure functions of a task and the result URL minted for this answer (``""`` when
there is none). The shapes are Fotor's (providers.md section 1.4).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from orchestrator.sandbox.fotor_tasks import FAILED, RUNNING, SandboxTask


def envelope(
    code: str,
    msg: str,
    data: Any = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Every answer: ``{"code", "msg", "data"}``."""
    return JSONResponse(
        {"code": code, "msg": msg, "data": data}, status_code=status_code, headers=headers
    )


def task_data(task: SandboxTask, result_url: str) -> dict[str, Any]:
    """The ``data`` of a task details answer."""
    data: dict[str, Any] = {
        "taskId": task.id,
        "createTime": task.created_ms,
        "updateTime": task.updated_ms,
        "status": task.status,
        "businessId": "",
        "type": task.task_type,
        "resultUrl": result_url,
        "hasHsfw": task.nsfw and task.status != RUNNING,
        "creditsIncrement": task.credits,
    }
    if task.status == FAILED:
        data["msg"] = task.msg or "task failed"
    return data


def webhook_payload(task: SandboxTask, result_url: str) -> dict[str, Any]:
    """The flat webhook body."""
    body: dict[str, Any] = {
        "taskId": task.id,
        "status": task.status,
        "businessId": "",
        "type": task.task_type,
        "resultUrl": result_url,
    }
    if task.nsfw and task.status != RUNNING:
        body["hasHsfw"] = True
    return body
