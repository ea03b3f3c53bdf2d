"""Per-model capabilities (issue 16): a request asking a model for something its backend cannot
honour is a 400 naming the parameter and the model, never a 200 that ignores it; models report
their capabilities on ``/v1/models`` and ``/v1/models/{id}``. The echo backend has none."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.kernel_helpers import assert_error_shape, echo_env, write_model
from localai.testing.server import LocalAIServer, echo_backend_script

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
USER = [{"role": "user", "content": "weather in Oslo?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("caps")
    models = root / "models"
    write_model(models, "echo")
    # an operator may state capabilities in the config; with a kernel-rendered template the
    # tools and the tool history reach the backend as text, which the echo backend shows
    write_model(models, "echo-tools", capabilities=["tools"], template={"chat": (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")})
    run_sh = echo_backend_script(root / "backend")
    with LocalAIServer(models, env=echo_env(run_sh), cwd=root) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


@pytest.mark.parametrize("extra, param, capability", [
    ({"tools": TOOLS}, "tools", "tools"),
    ({"tools": TOOLS, "tool_choice": "required"}, "tools", "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format", "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
     "response_format", "json_schema"),
    ({"logprobs": True}, "logprobs", "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs", "logprobs"),
    ({"n": 2}, "n", "n"),
    ({"grammar": "root ::= \"a\""}, "grammar", "grammar"),
])
def test_unsupported_chat_options_are_400_by_name(client, extra, param, capability):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=USER, extra_body=extra)
    error = info.value.body
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert "'echo'" in error["message"] and repr(capability) in error["message"]


def test_unsupported_in_a_stream_is_400_before_streaming(server):
    body = {"model": "echo", "messages": USER, "stream": True, "tools": TOOLS}
    error = assert_error_shape(httpx.post(server.url("/v1/chat/completions"), json=body), 400)
    assert error["param"] == "tools"


def test_tool_history_needs_the_tools_capability(server):
    history = USER + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"}]
    error = assert_error_shape(httpx.post(server.url("/v1/chat/completions"),
                                          json={"model": "echo", "messages": history}), 400)
    assert error["param"] == "messages" and "'tools'" in error["message"]


def test_unsupported_completion_options_and_deprecated_functions(server):
    for body, param in (({"prompt": "hi", "logprobs": 2}, "logprobs"), ({"prompt": "hi", "n": 3}, "n")):
        error = assert_error_shape(httpx.post(server.url("/v1/completions"), json={"model": "echo", **body}), 400)
        assert error["param"] == param
    body = {"model": "echo", "messages": USER, "functions": [TOOLS[0]["function"]]}
    error = assert_error_shape(httpx.post(server.url("/v1/chat/completions"), json=body), 400)
    assert error["param"] == "functions" and "tools" in error["message"]


def test_tool_choice_none_and_text_format_need_nothing(client):
    reply = client.chat.completions.create(model="echo", messages=USER, response_format={"type": "text"},
                                           tools=TOOLS, tool_choice="none")
    assert reply.choices[0].message.content.startswith("echo") and reply.choices[0].finish_reason == "stop"


def test_models_report_capabilities_and_retrieve(client, server):
    listed = {m.id: m for m in client.models.list()}
    assert listed["echo"].capabilities == [] and listed["echo-tools"].capabilities == ["tools"]
    model = client.models.retrieve("echo-tools")
    assert model.id == "echo-tools" and model.object == "model" and model.capabilities == ["tools"]
    assert model.backend == "echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    error = assert_error_shape(httpx.get(server.url("/models/no-such-model")), 404)
    assert error["code"] == "model_not_found"


def test_kernel_rendered_prompt_carries_tools_and_tool_history(client):
    history = USER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"}]
    reply = client.chat.completions.create(model="echo-tools", messages=history, tools=TOOLS)
    text = reply.choices[0].message.content
    assert text.startswith("echo: [system] You can call these functions") and '"name": "get_weather"' in text
    assert '[assistant] {"name": "get_weather", "parameters": {"city": "Oslo"}}' in text
    assert "[user] Result of get_weather: cold" in text


def test_bad_tool_choice_is_400(server):
    body = {"model": "echo-tools", "messages": USER, "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "other"}}}
    error = assert_error_shape(httpx.post(server.url("/v1/chat/completions"), json=body), 400)
    assert error["param"] == "tool_choice" and "other" in error["message"]
    body = {"model": "echo-tools", "messages": USER, "tool_choice": "required"}
    assert assert_error_shape(httpx.post(server.url("/v1/chat/completions"), json=body), 400)["param"] == "tool_choice"
