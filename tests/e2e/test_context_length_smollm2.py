"""The default SmolLM2 (``context_size: 2048``) on a real server: its context length in the model
lists, a prompt that does not fit as each dialect's 400 (the llama.cpp plugin's own error,
recognised by the kernel), and ``max_tokens`` over what is left cut to what is left."""

from __future__ import annotations

import re

import anthropic
import httpx
import ollama
import openai
import pytest

CONTEXT = 2048
LONG = "hello " * 2100


def test_models_show_the_context(server, client):
    assert client.models.retrieve("smollm2").model_extra["context_length"] == CONTEXT
    listed = {m["id"]: m for m in httpx.get(server.base_url + "/v1/models", timeout=30).json()["data"]}
    assert listed["smollm2"]["max_model_len"] == listed["smollm2"]["max_context_length"] == CONTEXT
    info = ollama.Client(host=server.base_url, timeout=60).show("smollm2").modelinfo
    assert info["llama-cpp.context_length"] == CONTEXT


def overflow(client) -> int:
    """The prompt tokens of LONG as the backend counts them, from OpenAI's error."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smollm2", max_tokens=8, messages=[{"role": "user", "content": LONG}])
    error = caught.value.body
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    found = re.search(r"maximum context length is (\d+) tokens\. However, your messages resulted in (\d+) tokens",
                      error["message"])
    assert found and int(found[1]) == CONTEXT and int(found[2]) > CONTEXT, error["message"]
    return int(found[2])


def test_openai_context_length_exceeded(client):
    assert overflow(client) >= 2100


def test_anthropic_prompt_too_long(server):
    sdk = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=180)
    with pytest.raises(anthropic.BadRequestError) as caught:
        with sdk.messages.stream(model="smollm2", max_tokens=32000,
                                 messages=[{"role": "user", "content": LONG}]) as events:
            list(events)
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert re.fullmatch(rf"prompt is too long: \d+ tokens > {CONTEXT} maximum", error["message"]), error["message"]


def test_ollama_context_error(server):
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=server.base_url, timeout=180).chat(model="smollm2",
                                                              messages=[{"role": "user", "content": LONG}])
    assert caught.value.status_code == 400
    assert caught.value.error.startswith("the input length exceeds the context length (")


def test_max_tokens_capped_to_what_is_left(client):
    """A prompt that leaves 4 tokens and ``max_tokens: 32000`` (Claude Code's) gets at most 4."""
    overhead = overflow(client) - 2100  # the chat template's tokens around the words
    words = CONTEXT - overhead - 4
    reply = client.chat.completions.create(model="smollm2", max_tokens=32000, temperature=0,
                                           messages=[{"role": "user", "content": "hello " * words}])
    assert reply.usage.prompt_tokens == CONTEXT - 4
    assert reply.usage.completion_tokens <= 4
