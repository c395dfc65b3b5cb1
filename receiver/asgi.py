"""``app`` for ASGI servers: ``uvicorn receiver.asgi:app``. Reads the environment."""

from __future__ import annotations

import os

from orchestrator.common.logs import configure
from orchestrator.common.settings import load_settings
from orchestrator.service.runtime import build_runtime
from receiver.app import create_app

_settings = load_settings()
configure(_settings.log_level, _settings.log_format)
_listen = os.environ.get("UPSCALE_LISTEN_URL") or (
    f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
)
app = create_app(
    build_runtime(
        _settings,
        listen_url=_listen,
        # The host the ASGI server binds, if whoever starts it says so; unknown (so the
        # sandbox is not mounted unless UPSCALE_SANDBOX=on) otherwise. `upscale serve`
        # builds its app itself (orchestrator/cli/serve.py) and does not come here.
        bind_host=os.environ.get("UPSCALE_LISTEN_HOST"),
        run_loops=os.environ.get("UPSCALE_RUN_LOOPS", "true").lower() != "false",
    ),
    tune_gc=True,
)
