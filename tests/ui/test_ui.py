"""The web UI in a real browser (Debian's Chromium through Playwright) against a real
``local-ai run``: a real OCI registry with the template backend pushed, a backend gallery
and a model gallery that list it (the ``world`` and ``server`` fixtures in conftest.py); the
backends and models pages, layout and page weight."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import expect


from tests.ui.helpers import LONG, PAGES


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
