"""Run one ASGI app under uvicorn as the benchmarks do: one worker (``--workers``), no access log,
``loop``/``http`` "auto" (uvloop and httptools when installed), lifespan on.

    python -m tests.bench.serve --app receiver.asgi:app --port 8001
    python -m tests.bench.serve --app tests.bench.serve:bare_app --port 8002

``--profile FILE`` runs the server under cProfile (the event-loop thread) and
writes the stats to FILE when the server stops (SIGTERM).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import signal
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_BODY = b'{"received":true}'


async def _bare(request: Request) -> Response:
    await request.body()
    return Response(_BODY, media_type="application/json")


# The baseline: the same route pattern as the service's callback route, reading the
# body and answering 200.
bare_app = Starlette(routes=[Route("/callbacks/{provider}/{token}", _bare, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    args = parser.parse_args()
    os.environ.setdefault("UPSCALE_LISTEN_URL", f"http://127.0.0.1:{args.port}")
    # uvicorn re-raises the SIGTERM it shut down on; exit normally instead, so that
    # finally blocks and atexit hooks (profile and timer dumps) still run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def run() -> None:
        uvicorn.run(
            args.app,
            host="127.0.0.1",
            port=args.port,
            workers=args.workers,
            loop=args.loop,
            http=args.http,
            access_log=False,
            log_config=None,
            lifespan="on",
        )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            run()
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        run()


if __name__ == "__main__":
    main()
