"""Every OpenAI route's bodies, stream events and errors against OpenAI's own OpenAPI document
(``tests/data/openai-openapi``, issue 25): a real ``local-ai run`` with the echo backend (plus
tool calls and logprobs, ``tests/wire_backend.py``), real HTTP, each response checked here by
``tests/openapi_wire.py`` (and again by the conftest hook that checks every test's responses)."""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import wave
from pathlib import Path

import httpx
import pytest

from localai.testing.server import LocalAIServer
from tests import openapi_wire
from tests.kernel_helpers import write_model

ROOT = Path(__file__).resolve().parent.parent
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "the weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}
USER = [{"role": "user", "content": "hello wire"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    script = root / "run.sh"
    backend = ROOT / "tests" / "wire_backend.py"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" "{backend}" "$@"\n')
    script.chmod(0o755)
    models = root / "models"
    write_model(models, "echo", capabilities=["tools", "json_schema", "logprobs"])
    write_model(models, "echo-tts", known_usecases=["tts"])
    write_model(models, "echo-stt", known_usecases=["transcript"])
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{script}", "LOCALAI_GALLERIES": "[]",
           "LOCALAI_BACKEND_GALLERIES": "[]", "LOCALAI_LOAD_PLUGINS": ""}
    with LocalAIServer(models, env=env, cwd=root) as srv:
        yield srv


def conforming(response: httpx.Response) -> httpx.Response:
    """The response, after checking it against the document (its body read whole)."""
    found = openapi_wire.problems(response.request.method, response.request.url.path, response.status_code,
                                  response.headers.get("content-type", ""), response.content)
    assert found == [], found
    return response


def post(server, path: str, body: dict, status: int = 200) -> httpx.Response:
    response = conforming(httpx.post(server.url(path), json=body, timeout=30))
    assert response.status_code == status, response.text
    return response


def events(response: httpx.Response) -> list[dict]:
    return [json.loads(data) for _, data in openapi_wire.sse_events(response.text) if data != "[DONE]"]


def error_of(response: httpx.Response, status: int) -> dict:
    """An error body with a string ``code`` and a ``param`` key, as every OpenAI error has."""
    assert response.status_code == status, response.text
    error = conforming(response).json()["error"]
    assert isinstance(error["code"], str) and "param" in error, error
    return error


def test_models(server):
    listed = conforming(httpx.get(server.url("/v1/models"))).json()
    assert {"echo", "echo-tts", "echo-stt"} <= {m["id"] for m in listed["data"]}
    assert conforming(httpx.get(server.url("/v1/models/echo"))).json()["id"] == "echo"
    assert error_of(httpx.get(server.url("/v1/models/nope")), 404)["param"] == "model"


@pytest.mark.parametrize("extra", [{}, {"tools": [TOOL], "tool_choice": "required"}, {"response_format": SCHEMA},
                                   {"logprobs": True, "top_logprobs": 1}], ids=["plain", "tools", "schema", "logprobs"])
def test_chat(server, extra):
    choice = post(server, "/v1/chat/completions", {"model": "echo", "messages": USER, **extra}).json()["choices"][0]
    assert choice["message"]["refusal"] is None
    if "logprobs" in extra:
        assert choice["logprobs"]["refusal"] is None and choice["logprobs"]["content"][0]["token"] == "echo:"
    else:
        assert choice["logprobs"] is None
    if "tools" in extra:
        assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("extra", [{}, {"tools": [TOOL], "tool_choice": "required"}, {"response_format": SCHEMA},
                                   {"logprobs": True, "top_logprobs": 1}], ids=["plain", "tools", "schema", "logprobs"])
def test_chat_stream(server, extra):
    body = {"model": "echo", "messages": USER, "stream": True, "stream_options": {"include_usage": True}, **extra}
    chunks = events(post(server, "/v1/chat/completions", body))
    assert len(chunks) > 3
    # with include_usage every chunk carries usage: null, the last the totals
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    if "logprobs" in extra:
        assert any(c["choices"] and (c["choices"][0].get("logprobs") or {}).get("content") for c in chunks)
    plain = events(post(server, "/v1/chat/completions", {**body, "stream_options": None}))
    assert all("usage" not in c for c in plain)


@pytest.mark.parametrize("stream", [False, True])
def test_completions(server, stream):
    body = {"model": "echo", "prompt": "one two three", "logprobs": 1, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = post(server, "/v1/completions", body)
    if stream:
        chunks = events(response)
        assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["usage"]["total_tokens"] > 0
    else:
        assert response.json()["choices"][0]["logprobs"]["tokens"]


def test_embeddings(server):
    floats = post(server, "/v1/embeddings", {"model": "echo", "input": ["a", "b"]}).json()
    packed = post(server, "/v1/embeddings", {"model": "echo", "input": ["a", "b"], "encoding_format": "base64"}).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack(f"{len(raw) // 4}f", raw)) == pytest.approx(floats["data"][0]["embedding"])
    error = error_of(httpx.post(server.url("/v1/embeddings"), json={"model": "echo", "input": "a",
                                                                     "dimensions": 100000}), 400)
    assert error["param"] == "dimensions"


def wav_bytes() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\x00\x00" * 1600)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "verbose_json", "text"])
def test_transcriptions(server, fmt):
    response = conforming(httpx.post(server.url("/v1/audio/transcriptions"), timeout=30,
                                     data={"model": "echo-stt", "response_format": fmt},
                                     files={"file": ("a.wav", wav_bytes(), "audio/wav")}))
    assert response.status_code == 200 and "echo transcript" in response.text


def test_transcription_without_file(server):
    error = error_of(httpx.post(server.url("/v1/audio/transcriptions"), data={"model": "echo-stt"}), 400)
    assert error["param"] == "file"


def test_speech_defaults_to_mp3(server):
    speech = post(server, "/v1/audio/speech", {"model": "echo-tts", "input": "hello", "voice": "alloy"})
    assert speech.headers["content-type"] == "audio/mpeg"
    assert speech.content[:3] == b"ID3" or speech.content[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
    tts = httpx.post(server.url("/tts"), json={"model": "echo-tts", "input": "hello"}, timeout=30)
    assert tts.headers["content-type"] == "audio/wav" and tts.content[:4] == b"RIFF"
    assert error_of(httpx.post(server.url("/v1/audio/speech"), json={"model": "echo-tts", "input": " "}),
                    400)["code"]


def test_responses_and_stored(server):
    created = post(server, "/v1/responses", {"model": "echo", "input": "hello wire", "user": "u-1"}).json()
    assert created["user"] == "u-1" and created["usage"]["input_tokens_details"]["cache_write_tokens"] == 0
    url = server.url(f"/v1/responses/{created['id']}")
    assert conforming(httpx.get(url)).json()["id"] == created["id"]
    assert conforming(httpx.delete(url)).status_code == 200
    assert error_of(httpx.get(url), 404)["param"] == "response_id"
    assert error_of(httpx.delete(url), 404)["param"] == "response_id"
    assert error_of(httpx.post(server.url("/v1/responses"), json={"model": "echo", "input": 42}), 400)["param"]


@pytest.mark.parametrize("extra", [{}, {"tools": [{"type": "function", **TOOL["function"]}],
                                        "tool_choice": "required"}], ids=["text", "tool"])
def test_responses_stream(server, extra):
    response = post(server, "/v1/responses", {"model": "echo", "input": "hello wire", "stream": True, **extra})
    kinds = [e["type"] for e in events(response)]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert ("response.function_call_arguments.delta" in kinds) == bool(extra)
    assert "usage" not in events(response)[0]["response"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"])
def test_errors(server, path):
    truncated = httpx.post(server.url(path), content=b'{"model": "echo", "mess', timeout=30,
                           headers={"content-type": "application/json"})
    error_of(truncated, 400)
    assert error_of(httpx.post(server.url(path), json={"model": "nope", "input": "x", "prompt": "x",
                                                       "messages": USER}, timeout=30), 404)["code"] == "model_not_found"


def test_validator_rejects_the_old_wire():
    """The document's judgement bites: last release's bodies fail where issue 25 says they did."""
    old_chat = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    found = openapi_wire.problems("POST", "/v1/chat/completions", 200, "application/json",
                                  json.dumps(old_chat).encode())
    assert any("logprobs" in p for p in found) and any("refusal" in p for p in found)
    old_error = {"error": {"message": "bad", "type": "invalid_request_error", "code": 400}}
    assert openapi_wire.problems("POST", "/v1/embeddings", 400, "application/json", json.dumps(old_error).encode())
    bad_event = b'event: response.created\ndata: {"type": "response.created", "sequence_number": 0}\n\n'
    assert openapi_wire.problems("POST", "/v1/responses", 200, "text/event-stream", bad_event)
    assert openapi_wire.problems("GET", "/models/jobs/x", 200, "application/json", b"{}") == []  # the gallery's


def test_hook_checks_every_response(file_server, openai_wire):
    """The conftest hook sees a non-conforming body any test receives (here from a plain file server)."""
    (file_server.directory / "v1").mkdir()
    (file_server.directory / "v1" / "models").write_text('{"object": "list"}')
    assert httpx.get(file_server.url("/v1/models")).status_code == 200
    assert any(p.startswith("GET /v1/models 200") for p in openai_wire), openai_wire
    openai_wire.clear()
