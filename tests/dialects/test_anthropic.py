"""Anthropic's Messages API on a real ``local-ai run`` (echo backend with tool calls), driven by
the official ``anthropic`` SDK, unchanged."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from localai.testing.server import LocalAIServer
from tests.dialects.helpers import tool_backend_script
from tests.kernel_helpers import write_model


@pytest.fixture(scope="module")
def server(dialect_server):
    return dialect_server


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=30)


def test_create(client):
    message = client.messages.create(model="echo", max_tokens=64, system="Be brief.",
                                     messages=[{"role": "user", "content": "hello world"}])
    assert message.type == "message" and message.role == "assistant" and message.model == "echo"
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "echo: system: Be brief. user: hello world assistant:"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 7 and message.usage.output_tokens == 8


def test_max_tokens_and_stop_sequence(client):
    short = client.messages.create(model="echo", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert short.content[0].text == "echo: user:" and short.stop_reason == "max_tokens"
    stopped = client.messages.create(model="echo", max_tokens=64, stop_sequences=["zzz", "c d"],
                                     messages=[{"role": "user", "content": "a b c d e"}])
    assert stopped.content[0].text == "echo: user: a b "
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "c d"


def test_content_blocks_in(client):
    message = client.messages.create(model="echo", max_tokens=64, system=[{"type": "text", "text": "S"}], messages=[
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}])
    assert message.content[0].text == "echo: system: S user: one two assistant:"


def test_stream_events_in_order(client):
    with client.messages.stream(model="echo-slow", max_tokens=64,
                                messages=[{"role": "user", "content": "hello stream"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    raw = [k for k in kinds if k not in ("text",)]  # the SDK adds "text" helper events
    assert raw[:2] == ["message_start", "content_block_start"]
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert len(deltas) == 5 and all(d.delta.type == "text_delta" for d in deltas)
    assert "".join(d.delta.text for d in deltas) == "echo: user: hello stream assistant:"
    assert final.content[0].text == "echo: user: hello stream assistant:"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


def test_stream_raw_wire_format(server):
    body = {"model": "echo", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", server.url("/v1/messages"), json=body, timeout=30,
                      headers={"anthropic-version": "2023-06-01"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block.split("\n", 1)[0] for block in text.strip().split("\n\n")]
    assert events == ["event: message_start", "event: ping", "event: content_block_start"] + \
        ["event: content_block_delta"] * 4 + \
        ["event: content_block_stop", "event: message_delta", "event: message_stop"]


def test_count_tokens(client):
    counted = client.messages.count_tokens(model="echo", system="S",
                                           messages=[{"role": "user", "content": "one two three"}])
    assert counted.input_tokens == 6  # "system: S", "user: one two three" by the echo tokenizer (words)


def test_unknown_model_is_a_404_in_anthropic_shape(client, server):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "not_found_error"
    raw = httpx.post(server.url("/v1/messages"), json={"model": "echo", "messages": []}, timeout=10)
    assert raw.status_code == 400
    assert raw.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                     "message": raw.json()["error"]["message"]}}


def test_api_key_from_x_api_key(tmp_path):
    models = tmp_path / "models"
    write_model(models, "echo")
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{tool_backend_script(tmp_path / 'backend')}",
           "LOCALAI_API_KEY": "sekret"}
    with LocalAIServer(models, env=env, cwd=tmp_path) as srv:
        good = anthropic.Anthropic(base_url=srv.base_url, api_key="sekret", max_retries=0)
        assert good.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "k"}]).content
        bad = anthropic.Anthropic(base_url=srv.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "k"}])
        assert info.value.body["error"]["type"] == "authentication_error"


def test_image_blocks_need_a_model_that_can_see(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="echo", max_tokens=8, messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "images" in info.value.body["error"]["message"]
