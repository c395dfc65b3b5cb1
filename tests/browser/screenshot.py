"""Take the README's console screenshot: ``python -m tests.browser.screenshot docs/console.png``.

Starts the sandbox and the service on 127.0.0.1, runs a few jobs through them
(succeeded, failed, uncertain and stuck ones), signs in and captures the overview.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM_ARGS, sign_in
from tests.e2e.harness import start_sandbox, start_service
from tests.factories import make_png


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sandbox = start_sandbox(tmp)
        service = start_service(
            tmp,
            sandbox,
            env={"UPSCALE_STUCK_AFTER_S": "0", "UPSCALE_POLL_GRACE_S": "3600"},
        )
        try:
            done = [
                service.submit(make_png(64 + i, 48, (40 * i, 120, 200)), provider=p)["id"]
                for i, p in enumerate(["upsampler", "photio", "artnex", "local", "upsampler"])
            ]
            service.wait(done)
            sandbox.faults(corrupt_result=1)
            failed = service.submit(make_png(32, 32), provider="photio")["id"]
            service.wait([failed])
            sandbox.faults(drop_callback=1)
            stuck = service.submit(make_png(30, 20))["id"]
            service.wait([stuck], done=lambda j: j["state"] == "submitted")
            sandbox.faults()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                sign_in(page, service)
                page.wait_for_selector("#live-state.on")
                page.screenshot(path=str(out), full_page=False)
                browser.close()
        finally:
            service.close()
            sandbox.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.png"))
