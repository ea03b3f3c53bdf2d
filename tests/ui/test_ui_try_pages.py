"""The try pages in a real browser against the echo backend: chat streams over SSE, images,
speech, transcription, and backend errors shown on the page."""

from __future__ import annotations

import io
import wave

import pytest
from playwright.sync_api import expect


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
