"""End to end: a real ``local-ai run`` serving the real SmolLM2 GGUF through the llama-cpp
plugin, driven by the official ``openai`` SDK."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import struct
import time

import httpx
import openai
import pytest


MODEL = "smollm2"
LONG_PROMPT = "Write a long, detailed essay about the history of the Roman Empire."


def chat(client, content, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("seed", 7)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kwargs)


def test_models_list_has_the_default_model(client):
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids


def test_chat_non_stream_reply_and_usage(client):
    response = chat(client, "What is the capital of France? Answer in one word.", max_tokens=16)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert "paris" in choice.message.content.lower()
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert response.model == MODEL


def test_max_tokens_gives_length(client):
    response = chat(client, LONG_PROMPT, max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5


def test_stream_matches_non_stream_and_reports_usage(client):
    full = chat(client, LONG_PROMPT, max_tokens=24).choices[0].message.content
    stream = chat(client, LONG_PROMPT, max_tokens=24, stream=True, stream_options={"include_usage": True})
    pieces, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert len(pieces) > 5
    assert "".join(pieces) == full
    assert reasons == ["length"]
    assert usage is not None and usage.completion_tokens == 24 and usage.prompt_tokens > 0


def test_stop_sequence_cuts_the_reply(client):
    full = chat(client, LONG_PROMPT, max_tokens=40).choices[0].message.content
    words = full.split()
    stop = words[len(words) // 2]
    response = chat(client, LONG_PROMPT, max_tokens=40, stop=[stop])
    text = response.choices[0].message.content
    assert stop not in text
    assert full.startswith(text.rstrip())
    assert response.choices[0].finish_reason == "stop"


def test_completions_stream_and_non_stream(client):
    prompt = "The three primary colors are"
    response = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, seed=3)
    text = response.choices[0].text
    assert text.strip()
    assert response.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, seed=3,
                                           stream=True)
        if c.choices
    )
    assert streamed == text


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_float_and_base64(client, server):
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    vectors = [d.embedding for d in floats.data]
    assert [len(v) for v in vectors] == [576, 576, 576]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert floats.usage.prompt_tokens > 0
    # the SDK asks for base64 by default and decodes it
    default = client.embeddings.create(model=MODEL, input=texts[0])
    assert default.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)
    raw = httpx.post(server.url("/v1/embeddings"),
                     json={"model": MODEL, "input": texts[0], "encoding_format": "base64"}, timeout=60).json()
    blob = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(blob) // 4}f", blob)) == pytest.approx(vectors[0], rel=1e-6)


def test_unknown_model_is_404_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    error = info.value.body
    assert "no-such-model" in error["message"] and error["type"] == "invalid_request_error"


def test_bad_bodies_are_400(client, server):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, "hi", temperature=5)
    assert "temperature" in info.value.body["message"]
    response = httpx.post(server.url("/v1/chat/completions"), content=b"{not json", timeout=10)
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_tokenize(server):
    response = httpx.post(server.url("/v1/tokenize"), json={"model": MODEL, "content": "hello world"}, timeout=30)
    assert response.status_code == 200 and len(response.json()["tokens"]) >= 2


def test_kernel_process_never_loads_model_libraries(server, client):
    chat(client, "hi", max_tokens=2)
    maps = open(f"/proc/{server.pid}/maps").read()
    # (file names, not bare words: the tox env of these tests is itself called "xllamacpp")
    for library in ("libllama", "llama_cpp/", "xllamacpp.abi3", "numpy/", "torch/"):
        assert library not in maps, f"the kernel process mapped {library}"
    loaded = httpx.get(server.url("/system"), timeout=10).json()["loaded_models"]
    backend_pid = [m["pid"] for m in loaded if m["id"] == MODEL][0]
    backend_maps = open(f"/proc/{backend_pid}/maps").read()
    # llama-cpp-python loads libllama; xllamacpp links llama.cpp into its own extension
    assert "libllama" in backend_maps or "xllamacpp.abi3" in backend_maps


def test_backend_killed_mid_stream_then_restarted(server, client):
    chat(client, "hi", max_tokens=2)
    pid = [m["pid"] for m in httpx.get(server.url("/system")).json()["loaded_models"] if m["id"] == MODEL][0]
    events = []
    with httpx.stream("POST", server.url("/v1/chat/completions"), timeout=120, json={
        "model": MODEL, "stream": True, "max_tokens": 400, "temperature": 0,
        "messages": [{"role": "user", "content": LONG_PROMPT}],
    }) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if len(events) == 4:
                os.kill(pid, signal.SIGKILL)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert "crashed" in error["message"]
    # the next request is served by a new backend process
    deadline = time.monotonic() + 10
    while True:
        try:
            response = chat(client, "Say hello.", max_tokens=8)
            break
        except openai.APIStatusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert response.choices[0].message.content
    new_pid = [m["pid"] for m in httpx.get(server.url("/system")).json()["loaded_models"] if m["id"] == MODEL][0]
    assert new_pid != pid
