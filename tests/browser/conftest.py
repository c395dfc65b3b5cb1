"""Browser tests: the real service (and the standalone sandbox) as processes on
127.0.0.1, driven through Debian's chromium with Playwright.

Browsers cannot be downloaded here, so chromium is launched by its path; where it
is not installed the tests are skipped, saying so (CI installs it: ``.ci/run``).

Fixtures:

- ``sandbox``, ``service``: as in the end-to-end tests (``tests/e2e/harness.py``);
  ``service_env`` (a dict) adds settings to the service before it starts.
- ``page``: a fresh browser page; when the test ends, its last page is saved as
  ``last-page.png`` in the test's ``tmp_path``.
- ``console``: a page signed in to the service's console (on the overview).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.conftest import sandbox  # noqa: F401  (the standalone sandbox fixture)
from tests.e2e.harness import TOKEN, Sandbox, Service, start_service

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

NO_CHROMIUM = "chromium is not installed (apt-get install chromium): no browser to drive"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if CHROMIUM is None:
                item.add_marker(pytest.mark.skip(reason=NO_CHROMIUM))


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package scope, not session: Playwright's sync API keeps an event loop running
    # in this thread while it is open, and the async tests after these need it gone.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def service_env() -> dict[str, str]:
    return {}


@pytest.fixture
def service(tmp_path: Path, sandbox: Sandbox, service_env: dict[str, str]) -> Iterator[Service]:  # noqa: F811
    svc = start_service(tmp_path, sandbox, env=service_env)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path, service: Service) -> Iterator[Page]:
    # (After the service starts, so that it is still up for the last screenshot.)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        try:
            opened.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
        finally:
            context.close()


def sign_in(page: Page, service: Service, token: str = TOKEN) -> None:
    page.goto(f"{service.base}/console/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


@pytest.fixture
def console(page: Page, service: Service) -> Page:
    sign_in(page, service)
    page.wait_for_url(f"{service.base}/console/")
    return page
