"""Real-browser fixtures: Debian's Chromium driven by Playwright (sync API), never a
downloaded browser. ``LOCALAI_TEST_CHROMIUM`` overrides the browser path and
``LOCALAI_TEST_ARTIFACTS`` the folder for screenshots and the page-weight report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LOCALAI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the UI tests need Playwright: pip install playwright (never `playwright install`)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(f"the UI tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import expect

    # assertions wait as long as actions do: a 2-core machine running backends can be slow to repaint
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots and the page-weight report go."""
    base = os.environ.get("LOCALAI_TEST_ARTIFACTS")
    path = Path(base) / "ui" if base else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


class PageProblems(list):
    """JavaScript errors a page raised; a test fails when there are any."""


@pytest.fixture
def open_page(browser):
    """Factory: ``open_page(width=1280, height=900)`` → a page in a fresh context (fresh localStorage).

    Confirm dialogs are accepted; uncaught page errors fail the test.
    """
    contexts = []
    problems = PageProblems()

    def open_(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.on("pageerror", lambda error: problems.append(str(error)))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, f"JavaScript errors on the page: {problems}"


@pytest.fixture
def page(open_page):
    return open_page()
