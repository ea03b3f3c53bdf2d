"""Real-browser fixtures: Debian's Chromium driven by Playwright (sync API), never a
downloaded browser. ``LOCALAI_TEST_CHROMIUM`` overrides the browser path and
``LOCALAI_TEST_ARTIFACTS`` the folder for screenshots and the page-weight report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import json
import sys

import pytest
import yaml

from localai.gallery import oci
from localai.testing.server import LocalAIServer, echo_backend_script

from tests.ui.helpers import closed_port, echo_models, template_copy

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


@pytest.fixture(scope="module")
def world(oci_registry, tmp_path_factory):
    """Galleries, models and the environment of the main server."""
    tmp = tmp_path_factory.mktemp("ui-world")
    image = f"{oci_registry.host}/localai/ui-template:1"
    oci.push_image(template_copy(tmp), image)
    backends = [
        {"name": "template-backend", "uri": image, "alias": "template", "license": "MIT",
         "description": "Bigram template backend for chat", "tags": ["llm", "text-to-text"],
         "urls": ["https://github.com/mudler/LocalAI"], "version": "1.0.0"},
        {"name": "meta-template", "description": "Meta entry that picks a build per host", "tags": ["llm"],
         "capabilities": {"default": "template-backend", "nvidia": "template-backend"}},
        {"name": "paint-backend", "uri": image, "description": "Paints pictures", "tags": ["diffusion", "text-to-image"]},
        {"name": "voice-backend", "uri": f"127.0.0.1:{closed_port()}/x:1",
         "description": "Speaks text; its registry is unreachable", "tags": ["tts", "text-to-speech"]},
        {"name": "ears-backend", "uri": image, "description": "Hears speech", "tags": ["speech-to-text"]},
        {"name": "vector-backend", "uri": image, "description": "Dense vectors", "tags": ["embeddings", "rerank"]},
    ]
    (tmp / "backends.yaml").write_text(yaml.safe_dump(backends))
    weights = tmp / "weights.bin"
    weights.write_bytes(bytes(range(256)) * 4096)
    echo = {"backend": "echo", "parameters": {"model": "gallery/weights.bin"}}
    models = [
        {"name": "gallery-chat", "description": "A chat model from the gallery", "license": "apache-2.0",
         "tags": ["llm", "chat"], "config_file": yaml.safe_dump({**echo, "known_usecases": ["chat"]}),
         "files": [{"filename": "gallery/weights.bin", "uri": f"file://{weights}"}], "urls": ["https://example.com/chat"]},
        {"name": "gallery-voice", "description": "A voice", "tags": ["tts"],
         "config_file": yaml.safe_dump({**echo, "known_usecases": ["tts"]})},
        {"name": "gallery-ears", "description": "Whisper-ish", "tags": ["stt", "whisper"],
         "config_file": yaml.safe_dump({**echo, "known_usecases": ["transcript"]})},
    ]
    (tmp / "models.yaml").write_text(yaml.safe_dump(models))
    echo_models(tmp / "models")
    script = echo_backend_script(tmp / "echo")
    env = {
        "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "test", "url": str(tmp / "backends.yaml")}]),
        "LOCALAI_GALLERIES": json.dumps([{"name": "local", "url": str(tmp / "models.yaml")}]),
        "LOCALAI_BACKENDS_PATH": str(tmp / "backends"),
        "LOCALAI_BACKENDS_SYSTEM_PATH": str(tmp / "system-backends"),
        "LOCALAI_ALLOW_BACKEND_URIS": "true",  # the manual install by URI
        "LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{script}",
        "LOCALAI_LOAD_PLUGINS": "none",  # only the built-ins: the page lists exactly our models
        "BACKEND_PYTHON": sys.executable,
    }
    return {"tmp": tmp, "image": image, "env": env, "models": tmp / "models"}


@pytest.fixture(scope="module")
def server(world):
    srv = LocalAIServer(world["models"], env=world["env"], cwd=world["tmp"])
    srv.start()
    yield srv
    srv.stop()
