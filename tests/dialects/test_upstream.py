"""The dialects on an HTTP-backend model (``backend: http``): a front ``local-ai run`` whose model
``remote`` is served by a second ``local-ai run`` (echo backend with tool calls) over its OpenAI API."""

from __future__ import annotations

import anthropic
import ollama
import openai
import pytest
import yaml

from localai.testing.server import LocalAIServer

ECHO = "echo: user: hello world assistant:"


@pytest.fixture(scope="module")
def front(dialect_server, tmp_path_factory):
    models = tmp_path_factory.mktemp("front-models")
    (models / "remote.yaml").write_text(yaml.safe_dump({
        "name": "remote", "backend": "http", "known_usecases": ["chat"],
        "proxy": {"upstream_url": dialect_server.base_url + "/v1", "upstream_model": "echo"}}))
    with LocalAIServer(models) as server:
        yield server


def test_anthropic_on_an_upstream(front):
    client = anthropic.Anthropic(base_url=front.base_url, api_key="x", max_retries=0, timeout=30)
    message = client.messages.create(model="remote", max_tokens=64,
                                     messages=[{"role": "user", "content": "hello world"}])
    assert message.content[0].text == ECHO and message.model == "remote"
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 5
    short = client.messages.create(model="remote", max_tokens=2, messages=[{"role": "user", "content": "a b c"}])
    assert short.stop_reason == "max_tokens"
    with client.messages.stream(model="remote", max_tokens=64,
                                messages=[{"role": "user", "content": "hello world"}]) as stream:
        assert "".join(stream.text_stream) == ECHO
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    called = client.messages.create(model="remote", max_tokens=64, tools=tools, tool_choice={"type": "any"},
                                    messages=[{"role": "user", "content": "Weather?"}])
    assert called.stop_reason == "tool_use" and called.content[0].input == {"city": "echo"}


def test_ollama_and_responses_on_an_upstream(front):
    client = ollama.Client(host=front.base_url, timeout=30)
    assert "".join(p.message.content for p in client.chat(
        model="remote", messages=[{"role": "user", "content": "hello world"}], stream=True)) == ECHO
    responses = openai.OpenAI(base_url=front.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
    with responses.responses.stream(model="remote", input="hello world") as stream:
        final = stream.get_final_response()
    assert final.output_text == ECHO
    follow = responses.responses.create(model="remote", input="again", previous_response_id=final.id)
    assert follow.output_text.startswith("echo: user: hello world assistant: echo: user: hello world")
    with pytest.raises(anthropic.NotFoundError):  # errors in the dialect's shape
        anthropic.Anthropic(base_url=front.base_url, api_key="x", max_retries=0).messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
