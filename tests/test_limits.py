"""Body size limits per route under a real ``local-ai run``: JSON (``LOCALAI_UPLOAD_LIMIT``),
audio uploads (``LOCALAI_AUDIO_UPLOAD_LIMIT``) and base64 images, from Content-Length and
while reading a chunked body; 413 in the OpenAI error shape."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.kernel_helpers import assert_error_shape, echo_env, write_model

MB = 1024 * 1024


@pytest.fixture
def server(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "echo")
    write_model(models, "whisper", known_usecases=["transcript"])
    write_model(models, "painter", known_usecases=["image"])
    return localai_server(models, env=echo_env(echo_backend, LOCALAI_UPLOAD_LIMIT="1",
                                               LOCALAI_AUDIO_UPLOAD_LIMIT="2"))


def chat_body(size: int) -> bytes:
    return b'{"model": "echo", "messages": [{"role": "user", "content": "' + b"a" * size + b'"}]}'


def too_large(response: httpx.Response, setting: str) -> None:
    error = assert_error_shape(response, 413)
    assert error["type"] == "invalid_request_error"
    if error["code"] == "request_too_large":
        assert setting in error["message"]


def test_json_limit(server):
    headers = {"Content-Type": "application/json"}
    ok = httpx.post(server.url("/v1/chat/completions"), content=chat_body(MB // 2), headers=headers, timeout=30)
    assert ok.status_code == 200, ok.text
    over = httpx.post(server.url("/v1/chat/completions"), content=chat_body(MB + 10), headers=headers, timeout=30)
    too_large(over, "LOCALAI_UPLOAD_LIMIT")
    assert over.json()["error"]["code"] == "request_too_large"  # refused from Content-Length
    for path in ("/v1/embeddings", "/models/apply", "/backends/apply", "/tts"):
        too_large(httpx.post(server.url(path), content=chat_body(MB + 10), headers=headers, timeout=30),
                  "LOCALAI_UPLOAD_LIMIT")


def test_chunked_body_is_cut_while_reading(server):
    def chunks():
        for _ in range(24):
            yield b"a" * (64 * 1024)

    response = httpx.post(server.url("/v1/chat/completions"), content=chunks(), timeout=30,
                          headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    too_large(response, "LOCALAI_UPLOAD_LIMIT")


def test_audio_upload_limit_is_larger(server):
    def upload(size: int) -> httpx.Response:
        return httpx.post(server.url("/v1/audio/transcriptions"), data={"model": "whisper"},
                          files={"file": ("a.wav", b"\0" * size, "audio/wav")}, timeout=30)

    ok = upload(MB + MB // 2)  # over the JSON limit, under the audio one
    assert ok.status_code == 200, ok.text
    assert ok.json()["text"].startswith("echo transcript of")
    too_large(upload(2 * MB + 10), "LOCALAI_AUDIO_UPLOAD_LIMIT")


def test_base64_image_uses_the_upload_limit(server):
    image = base64.b64encode(b"\x89PNG" + b"\0" * (MB)).decode()
    response = httpx.post(server.url("/v1/images/generations"), timeout=30,
                          json={"model": "painter", "prompt": "a cat", "file": image, "size": "16x16"})
    too_large(response, "LOCALAI_UPLOAD_LIMIT")


def test_default_json_limit_is_15_mb(localai_server, echo_backend, tmp_path):
    write_model(tmp_path / "models", "echo")
    server = localai_server(tmp_path / "models", env=echo_env(echo_backend))
    response = httpx.post(server.url("/v1/chat/completions"), content=chat_body(15 * MB + 1), timeout=60,
                          headers={"Content-Type": "application/json"})
    too_large(response, "LOCALAI_UPLOAD_LIMIT")
    assert "15 MB" in response.json()["error"]["message"]
