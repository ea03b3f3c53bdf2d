"""The web UI in a real browser (Debian's Chromium through Playwright) against a real
``local-ai run``: a real OCI registry with the template backend pushed, a backend gallery
and a model gallery that list it, and the echo backend for chat, images, speech and
transcription."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import sys
import wave
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import expect

from localai.gallery import oci
from localai.testing.server import LocalAIServer, echo_backend_script

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "contrib" / "backend-template"
PAGES = ["backends", "models", "chat", "images", "tts", "transcribe"]
LONG = 60_000  # ms: installs pull from the registry


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def template_copy(tmp: Path) -> Path:
    target = tmp / "template"
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns("venv", "__pycache__", "test_*.py"))
    # some weight, so that the install has download progress to report
    (target / "weights.bin").write_bytes(bytes(range(256)) * 8 * 1024)
    return target


def echo_models(models: Path) -> None:
    models.mkdir(parents=True, exist_ok=True)
    specs = {
        "echo-chat": {"known_usecases": ["chat", "completion"], "options": ["token_delay:0.05"],
                      "template": {"use_tokenizer_template": True}},
        "echo-img": {"known_usecases": ["image"]},
        "echo-tts": {"known_usecases": ["tts"]},
        "echo-stt": {"known_usecases": ["transcript"]},
    }
    for name, extra in specs.items():
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, **extra}))


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


def visible_cards(page) -> set[str]:
    return set(page.eval_on_selector_all("#gallery .card:not([hidden])", "els => els.map(e => e.dataset.name)"))


def record(page, selector: str) -> None:
    """Record every state of ``selector`` (state badge, job text, progress bar) in window.__seen."""
    page.evaluate("""(selector) => {
        window.__seen = [];
        const root = document.querySelector(selector);
        const snap = () => {
            const state = root.querySelector('.state');
            const job = root.querySelector('.job');
            window.__seen.push({state: state ? state.textContent : '', job: job ? job.textContent : '',
                                progress: Boolean(root.querySelector('.job progress'))});
        };
        new MutationObserver(snap).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
    }""", selector)


def mark_no_reload(page) -> None:
    page.evaluate("window.__sameDocument = true")


def assert_no_reload(page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def open_backends(page, server):
    page.goto(server.url("/ui/backends"))
    expect(page.locator("#gallery .card")).to_have_count(6)


def card(page, name: str):
    return page.locator(f'#gallery .card[data-name="{name}"]')


# -- backends ---------------------------------------------------------------------------------


def test_root_redirects_to_the_backends_page(page, server):
    page.goto(server.url("/"))
    assert page.url.endswith("/ui/backends")
    expect(page.get_by_role("link", name="Backends")).to_have_attribute("aria-current", "page")


def test_backend_search_and_every_filter_narrow_the_cards(page, server):
    open_backends(page, server)
    everything = {"template-backend", "meta-template", "paint-backend", "voice-backend", "ears-backend", "vector-backend"}
    assert visible_cards(page) == everything
    expected = {
        "LLM": {"template-backend", "meta-template"},
        "Diffusion": {"paint-backend"},
        "TTS": {"voice-backend"},
        "Whisper": {"ears-backend"},
        "Embeddings": {"vector-backend"},
        "All": everything,
    }
    for label, names in expected.items():
        button = page.get_by_role("button", name=label, exact=True)
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        assert visible_cards(page) == names, label
    search = page.get_by_label("Search backends")
    for query, names in [("pictures", {"paint-backend"}),            # description
                         ("text-to-speech", {"voice-backend"}),      # tag
                         ("vector", {"vector-backend"}),             # name
                         ("TEMPLATE", {"template-backend", "meta-template"})]:
        search.fill(query)
        assert visible_cards(page) == names, query
    page.get_by_role("button", name="LLM", exact=True).click()
    search.fill("meta")
    assert visible_cards(page) == {"meta-template"}  # search and filter combine
    search.fill("no such backend")
    assert visible_cards(page) == set()
    expect(page.locator("#gallery .empty")).to_have_text("Nothing matches the search and filter.")
    search.fill("")
    page.get_by_role("button", name="All", exact=True).click()
    assert visible_cards(page) == everything


def test_install_shows_progress_then_installed_info_and_delete(page, server, world, artifacts):
    open_backends(page, server)
    expect(page.locator("#no-backends")).to_be_visible()
    mark_no_reload(page)
    target = card(page, "template-backend")
    record(page, '#gallery .card[data-name="template-backend"]')
    target.get_by_role("button", name="Install template-backend").click()
    expect(target.locator(".state")).to_have_text("Installed", timeout=LONG)
    assert_no_reload(page)
    seen = page.evaluate("window.__seen")
    working = [s for s in seen if s["state"] == "Installing…"]
    assert working and any(s["progress"] for s in working), seen
    assert any("started" in s["job"] or "downloading" in s["job"] for s in working), seen  # the server's own messages
    expect(target.locator(".job")).to_contain_text("installed")
    expect(target.get_by_role("button", name="Delete template-backend")).to_be_visible()
    expect(target.get_by_role("button", name="Install template-backend")).to_be_hidden()
    row = page.locator('#installed-list .row[data-name="template-backend"]')
    expect(row).to_contain_text("alias template")

    target.get_by_role("button", name="Details of template-backend").click()
    dialog = page.locator("#info-dialog")
    expect(dialog).to_be_visible()
    digest = httpx.get(server.url("/backends")).json()[0]["Metadata"]["digest"]
    for text in [world["image"], "template", "llm, text-to-text", "MIT", "https://github.com/mudler/LocalAI",
                 digest, "Installed at", "LLM"]:
        expect(dialog).to_contain_text(text)
    page.screenshot(path=str(artifacts / "backend-info.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    card(page, "meta-template").get_by_role("button", name="Details of meta-template").click()
    expect(dialog).to_contain_text("default → template-backend")
    page.keyboard.press("Escape")

    target.get_by_role("button", name="Delete template-backend").click()
    expect(target.locator(".state")).to_have_text("Not installed", timeout=LONG)
    expect(page.locator("#no-backends")).to_be_visible()
    assert_no_reload(page)
    assert httpx.get(server.url("/backends")).json() == []


def test_jobs_started_elsewhere_show_live_from_the_event_stream(page, server):
    open_backends(page, server)
    mark_no_reload(page)
    target = card(page, "paint-backend")
    record(page, '#gallery .card[data-name="paint-backend"]')
    reply = httpx.post(server.url("/backends/apply"), json={"id": "test@paint-backend"}, timeout=30)
    assert reply.status_code == 200, reply.text
    expect(target.locator(".state")).to_have_text("Installed", timeout=LONG)
    assert any(s["state"] == "Installing…" for s in page.evaluate("window.__seen"))
    expect(page.locator('#installed-list .row[data-name="paint-backend"]')).to_be_visible()
    assert httpx.post(server.url("/backends/delete/paint-backend"), timeout=30).status_code == 200
    expect(target.locator(".state")).to_have_text("Not installed", timeout=LONG)
    expect(page.locator("#no-backends")).to_be_visible()
    assert_no_reload(page)


def test_failing_install_shows_the_error(page, server, artifacts):
    open_backends(page, server)
    target = card(page, "voice-backend")
    target.get_by_role("button", name="Install voice-backend").click()
    error = target.get_by_role("alert")
    expect(error).to_contain_text("Install failed", timeout=LONG)
    expect(error).to_contain_text("127.0.0.1")
    expect(target.locator(".state")).to_have_text("Failed")
    expect(target.get_by_role("button", name="Retry voice-backend")).to_be_visible()
    target.screenshot(path=str(artifacts / "backend-failed.png"))


def test_manual_install_by_uri_then_delete_from_the_installed_list(page, server, world):
    open_backends(page, server)
    page.get_by_label("OCI image or URI").fill(world["image"])
    page.get_by_label("Name (optional)").fill("manual-one")
    page.get_by_label("Alias (optional)").fill("my-engine")
    page.locator("#manual-submit").click()
    expect(page.locator("#manual-status")).to_contain_text("backend manual-one installed", timeout=LONG)
    row = page.locator('#installed-list .row[data-name="manual-one"]')
    expect(row).to_contain_text("alias my-engine")
    row.get_by_role("button", name="Details of manual-one").click()
    expect(page.locator("#info-dialog")).to_contain_text(world["image"])
    page.keyboard.press("Escape")
    row.get_by_role("button", name="Delete manual-one").click()
    expect(row).to_have_count(0, timeout=LONG)
    expect(page.locator("#no-backends")).to_be_visible()


def test_keyboard_reaches_install_and_enter_activates_it(page, server):
    open_backends(page, server)
    page.get_by_label("Search backends").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Install ears-backend":
            break
    else:
        pytest.fail("Tab never reached the Install button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focused button shows no focus ring"
    page.keyboard.press("Enter")
    target = card(page, "ears-backend")
    expect(target.locator(".state")).to_have_text("Installed", timeout=LONG)
    # focus stays in the card (on Delete) so the keyboard user can carry on
    assert page.evaluate("document.activeElement.textContent") == "Delete ears-backend"
    page.keyboard.press("Enter")
    expect(target.locator(".state")).to_have_text("Not installed", timeout=LONG)


# -- models -----------------------------------------------------------------------------------


def test_models_page_lists_installed_models_and_installs_from_the_gallery(page, server, world):
    page.goto(server.url("/ui/models"))
    rows = page.locator("#installed-list .row")
    expect(rows).to_have_count(4)
    chat_row = page.locator('#installed-list .row[data-name="echo-chat"]')
    expect(chat_row.locator(".backend")).to_have_text("echo")
    expect(chat_row.locator(".usecases")).to_contain_text("chat")
    expect(chat_row.locator(".usecases")).to_contain_text("completion")
    expect(page.locator('#installed-list .row[data-name="echo-stt"] .usecases')).to_have_text("transcript")
    expect(chat_row.get_by_role("link", name="Chat with echo-chat")).to_have_attribute("href", "/ui/chat?model=echo-chat")

    expect(page.locator("#gallery .card")).to_have_count(3)
    page.get_by_role("button", name="TTS", exact=True).click()
    assert visible_cards(page) == {"gallery-voice"}
    page.get_by_role("button", name="Whisper", exact=True).click()
    assert visible_cards(page) == {"gallery-ears"}
    page.get_by_role("button", name="All", exact=True).click()
    page.get_by_label("Search models").fill("chat model")
    assert visible_cards(page) == {"gallery-chat"}

    mark_no_reload(page)
    record(page, '#gallery .card[data-name="gallery-chat"]')
    target = card(page, "gallery-chat")
    target.get_by_role("button", name="Install gallery-chat").click()
    expect(target.locator(".state")).to_have_text("Installed", timeout=LONG)
    seen = page.evaluate("window.__seen")
    assert any(s["state"] == "Installing…" and s["progress"] for s in seen), seen
    installed_row = page.locator('#installed-list .row[data-name="gallery-chat"]')
    expect(installed_row.locator(".backend")).to_have_text("echo")
    expect(installed_row.locator(".usecases")).to_have_text("chat")
    assert (world["models"] / "gallery" / "weights.bin").exists()
    target.get_by_role("button", name="Details of gallery-chat").click()
    expect(page.locator("#info-dialog")).to_contain_text("gallery/weights.bin")
    expect(page.locator("#info-dialog")).to_contain_text("apache-2.0")
    page.keyboard.press("Escape")
    target.get_by_role("button", name="Delete gallery-chat").click()
    expect(target.locator(".state")).to_have_text("Not installed", timeout=LONG)
    expect(installed_row).to_have_count(0)
    assert_no_reload(page)


# -- try it -----------------------------------------------------------------------------------


def test_chat_streams_the_reply_into_the_page(page, server, artifacts):
    page.goto(server.url("/ui/chat?model=echo-chat"))
    expect(page.get_by_label("Model")).to_have_value("echo-chat")
    page.evaluate("""() => {
        window.__texts = [];
        new MutationObserver(() => {
            const last = document.querySelector('.msg-bubble.assistant:last-of-type .text');
            if (last && window.__texts[window.__texts.length - 1] !== last.textContent) window.__texts.push(last.textContent);
        }).observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true});
    }""")
    message = "hello from a real browser over server sent events"
    page.get_by_label("Message").fill(message)
    page.get_by_label("Message").press("Enter")
    reply = page.locator(".msg-bubble.assistant .text").last
    expect(reply).to_have_text(f"echo: {message}")
    expect(page.locator(".msg-bubble.streaming")).to_have_count(0)
    texts = [t for t in page.evaluate("window.__texts") if t]
    assert len(texts) >= 5, texts  # it grew word by word
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
    # the conversation goes on with its history
    page.get_by_label("Message").fill("second turn")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-bubble.assistant .text").last).to_have_text("echo: second turn")
    expect(page.locator(".msg-bubble")).to_have_count(4)
    page.screenshot(path=str(artifacts / "chat-conversation.png"))


def test_image_page_shows_the_generated_image(page, server, artifacts):
    page.goto(server.url("/ui/images?model=echo-img"))
    page.get_by_label("Size").select_option("256x256")
    page.get_by_label("Prompt").fill("a red square")
    page.get_by_role("button", name="Generate").click()
    image = page.locator("#image-results img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "Generated image: a red square")
    size = page.evaluate("""async () => {
        const img = document.querySelector('#image-results img');
        if (!img.complete) await new Promise((resolve) => img.addEventListener('load', resolve));
        return [img.naturalWidth, img.naturalHeight];
    }""")
    assert size == [256, 256]
    page.screenshot(path=str(artifacts / "images-result.png"), full_page=True)


def test_tts_page_plays_the_speech(page, server, artifacts):
    page.goto(server.url("/ui/tts?model=echo-tts"))
    text = "Hello from LocalAI in the browser."
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Speak").click()
    audio = page.locator("#tts-results audio")
    expect(audio).to_have_count(1)
    assert audio.get_attribute("src").startswith("blob:")
    duration = page.evaluate("""async () => {
        const audio = document.querySelector('#tts-results audio');
        if (audio.readyState < 1) await new Promise((resolve, reject) => {
            audio.addEventListener('loadedmetadata', resolve);
            audio.addEventListener('error', () => reject(new Error('the browser cannot play it')));
        });
        return audio.duration;
    }""")
    assert duration == pytest.approx(len(text) * 0.05, rel=0.05)  # the echo backend's 50 ms per character
    page.screenshot(path=str(artifacts / "tts-result.png"), full_page=True)


def wav_bytes(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buffer.getvalue()


def test_transcription_page_uploads_a_file_and_shows_the_text(page, server, artifacts):
    page.goto(server.url("/ui/transcribe?model=echo-stt"))
    audio = wav_bytes()
    page.get_by_label("Audio file").set_input_files(files=[{"name": "hello.wav", "mimeType": "audio/wav", "buffer": audio}])
    page.get_by_role("button", name="Transcribe").click()
    expect(page.locator("#transcript-text")).to_have_text(f"echo transcript of {len(audio)} bytes")
    page.screenshot(path=str(artifacts / "transcribe-result.png"), full_page=True)


def test_try_pages_show_backend_errors(page, server):
    page.goto(server.url("/ui/chat?model=echo-chat"))
    page.get_by_label("Message").fill("ERROR_NOW please")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-error")).to_contain_text("Chat failed")


# -- layout and weight --------------------------------------------------------------------------


def wait_for_page(page, name: str) -> None:
    if name in ("backends", "models"):
        expect(page.locator("#gallery .card").first).to_be_visible()
        expect(page.locator("#installed-list .muted")).to_have_count(0)
    else:
        expect(page.locator("#model option").first).not_to_have_text("Loading…")


def test_narrow_screen_has_no_horizontal_overflow(open_page, server, artifacts):
    page = open_page(width=400, height=800)
    for name in PAGES:
        page.goto(server.url(f"/ui/{name}"))
        wait_for_page(page, name)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"/ui/{name} is {width}px wide at 400px"
        page.screenshot(path=str(artifacts / f"narrow-{name}.png"), full_page=True)


def test_screenshots_load_time_and_download_size(open_page, server, artifacts):
    """One screenshot per page, and what each page costs: load time and bytes downloaded."""
    page = open_page()
    report = {}
    for name in PAGES:
        page.goto(server.url(f"/ui/{name}"))
        wait_for_page(page, name)
        metrics = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const resources = performance.getEntriesByType('resource');
            const bytes = (e) => e.encodedBodySize || e.transferSize || 0;
            return {dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
                    load_ms: Math.round(nav.loadEventEnd),
                    requests: resources.length + 1,
                    bytes: bytes(nav) + resources.reduce((sum, e) => sum + bytes(e), 0)};
        }""")
        report[name] = metrics
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    (artifacts / "page-weight.json").write_text(json.dumps(report, indent=2))
    print(f"\nUI pages (screenshots in {artifacts}):")
    for name, m in report.items():
        print(f"  /ui/{name:<11} load {m['load_ms']:>4} ms  {m['requests']:>2} requests  {m['bytes'] / 1024:.1f} KiB")
    assert all(m["load_ms"] < 5000 for m in report.values()), report


# -- empty states and API keys ----------------------------------------------------------------


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
