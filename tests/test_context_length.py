"""A model's context on a real ``local-ai run`` (echo backend, where a word stands for a token):
its length in the model lists, and a prompt that does not fit as each dialect's own 400 error.

The echo backend answers an over-long prompt as llama.cpp's server does (gRPC INVALID_ARGUMENT,
"request (N tokens) exceeds the available context size (M tokens)"); the kernel turns that into
OpenAI's ``context_length_exceeded``, Anthropic's "prompt is too long" and Ollama's error.
"""

from __future__ import annotations

import re

import anthropic
import httpx
import ollama
import openai
import pytest

from localai.testing.server import LocalAIServer, echo_backend_script
from tests.kernel_helpers import assert_error_shape, echo_env, write_model

LONG = " ".join(["word"] * 30)  # with "user:" and "assistant:", 32 tokens for the echo backend
CLAUDE_CODE = re.compile(r"^prompt is too long: \d+ tokens > \d+ maximum$")  # what Claude Code matches


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("context")
    models = root / "models"
    write_model(models, "short", context_size=12)
    write_model(models, "plain")
    run_sh = echo_backend_script(root / "backend")
    with LocalAIServer(models, env=echo_env(run_sh), cwd=root) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def test_models_carry_context_length(server, oai):
    listed = {m["id"]: m for m in httpx.get(server.base_url + "/v1/models").json()["data"]}
    one = httpx.get(server.base_url + "/v1/models/short").json()
    for model in (listed["short"], one):
        assert (model["context_length"], model["max_model_len"], model["max_context_length"]) == (12, 12, 12)
    assert "context_length" not in listed["plain"]  # unknown here: the backend's default applies
    assert oai.models.retrieve("short").model_extra["context_length"] == 12


def test_ollama_show_context_length(server):
    info = ollama.Client(host=server.base_url, timeout=30).show("short").modelinfo
    assert info["echo.context_length"] == 12 and info["general.architecture"] == "echo"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_context_length_exceeded(oai, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="short", stream=stream, messages=[{"role": "user", "content": LONG}])
    error = caught.value.body
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "maximum context length is 12 tokens" in error["message"] and "resulted in 32 tokens" in error["message"]
    assert "context_size" in error["message"]


def test_responses_context_length_exceeded(server):
    answer = httpx.post(server.base_url + "/v1/responses", json={"model": "short", "input": LONG}, timeout=30)
    assert assert_error_shape(answer, 400)["code"] == "context_length_exceeded"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_prompt_too_long(server, stream):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as caught:
        if stream:
            with client.messages.stream(model="short", max_tokens=64,
                                        messages=[{"role": "user", "content": LONG}]) as events:
                list(events)
        else:
            client.messages.create(model="short", max_tokens=64, messages=[{"role": "user", "content": LONG}])
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert CLAUDE_CODE.match(error["message"]) and error["message"] == "prompt is too long: 32 tokens > 12 maximum"


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_context_error(server, stream):
    client = ollama.Client(host=server.base_url, timeout=30)
    with pytest.raises(ollama.ResponseError) as caught:
        answer = client.chat(model="short", stream=stream, messages=[{"role": "user", "content": LONG}])
        if stream:
            list(answer)
    assert caught.value.status_code == 400
    assert caught.value.error.startswith("the input length exceeds the context length (32 tokens > 12 maximum)")


def test_max_tokens_over_what_is_left_is_capped(oai):
    """Claude Code asks for 32000 tokens: the reply is cut where the context ends, not refused."""
    reply = oai.chat.completions.create(model="short", max_tokens=32000,
                                        messages=[{"role": "user", "content": "a b c d e f g h"}])
    assert reply.usage.prompt_tokens == 10 and reply.usage.completion_tokens == 2
    assert reply.choices[0].message.content == "echo: user:"
