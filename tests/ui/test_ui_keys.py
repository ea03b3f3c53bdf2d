"""A server of its own per test: empty states without galleries or models, and the API key
asked once then sent by every page."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
from playwright.sync_api import expect

from localai.testing.server import LocalAIServer

from tests.ui.helpers import echo_models


@contextlib.contextmanager
def server_and_page(open_page, models: Path, env: dict, cwd: Path):
    """A server of its own and a page; the page closes first (its event stream would hold the shutdown)."""
    with LocalAIServer(models, env=env, cwd=cwd) as srv:
        page = open_page()
        try:
            yield srv, page
        finally:
            page.close()


def test_empty_states_without_galleries_or_models(open_page, tmp_path, artifacts):
    env = {"LOCALAI_BACKEND_GALLERIES": "[]", "LOCALAI_GALLERIES": "[]", "LOCALAI_LOAD_PLUGINS": "none",
           "LOCALAI_BACKENDS_PATH": str(tmp_path / "backends")}
    (tmp_path / "models").mkdir()
    with server_and_page(open_page, tmp_path / "models", env, tmp_path) as (srv, page):
        page.goto(srv.url("/ui/backends"))
        expect(page.locator("#no-gallery")).to_contain_text("No backend gallery configured")
        expect(page.locator("#no-backends")).to_contain_text("No backends installed")
        page.screenshot(path=str(artifacts / "empty-backends.png"), full_page=True)
        page.goto(srv.url("/ui/models"))
        expect(page.locator("#no-gallery")).to_contain_text("No model gallery configured")
        expect(page.locator("#no-models")).to_contain_text("No models installed")
        page.goto(srv.url("/ui/chat"))
        expect(page.locator("#no-models")).to_be_visible()
        expect(page.locator("#no-models")).to_contain_text("No chat model is installed")
        expect(page.get_by_role("button", name="Send")).to_be_disabled()


def test_api_key_is_asked_once_then_sent_everywhere(open_page, tmp_path, world, artifacts):
    models = tmp_path / "models"
    echo_models(models)
    env = {**world["env"], "LOCALAI_API_KEY": "sekrit-key", "LOCALAI_BACKENDS_PATH": str(tmp_path / "backends")}
    with server_and_page(open_page, models, env, tmp_path) as (srv, page):
        assert httpx.get(srv.url("/v1/models")).status_code == 401
        statuses = []
        page.on("response", lambda r: statuses.append((r.status, r.url)))
        page.goto(srv.url("/ui/models"))
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("API key required")
        page.get_by_label("API key", exact=True).fill("wrong-key")
        page.get_by_label("API key", exact=True).press("Enter")
        expect(page.locator("#key-dialog-error")).to_contain_text("rejected")  # asked again, saying why
        page.screenshot(path=str(artifacts / "api-key-dialog.png"))
        page.get_by_label("API key", exact=True).fill("sekrit-key")
        page.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#installed-list .row")).to_have_count(4)
        expect(page.locator("#gallery .card")).to_have_count(3)
        assert page.evaluate("localStorage.getItem('localai-api-key')") == "sekrit-key"
        # other pages use the stored key without asking; chat streams with it
        statuses.clear()
        page.goto(srv.url("/ui/chat?model=echo-chat"))
        page.get_by_label("Message").fill("with a key")
        page.get_by_label("Message").press("Enter")
        expect(page.locator(".msg-bubble.assistant .text").last).to_have_text("echo: with a key")
        expect(dialog).to_be_hidden()
        assert not [s for s in statuses if s[0] == 401], statuses
