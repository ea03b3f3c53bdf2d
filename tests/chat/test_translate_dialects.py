"""Anthropic, Ollama and Responses: wire -> neutral request, and the core's events -> wire (no server)."""

from __future__ import annotations

import asyncio

import pytest

from localai.chat.body import ChatCompletionRequest, parse
from localai.chat.request import chat_request
from localai.dialects import anthropic, ollama, responses
from localai.errors import BadRequest
from tests.chat.events import ERROR, FINISH, TEXT, TOOL, USAGE, ScriptedTurn, backend_failure, sse_events


def neutral(body):
    return chat_request(parse(ChatCompletionRequest, body))


def wire(response) -> list:
    async def run():
        return b"".join([chunk async for chunk in response.response])

    return sse_events(asyncio.run(run()))


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_request_becomes_the_neutral_request():
    req = neutral(anthropic.chat_body({
        "model": "m", "max_tokens": 7, "system": [{"type": "text", "text": "sys"}], "top_k": 3,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                                              {"type": "tool_use", "id": "tu1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "ok",
                                          "is_error": True}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "output_format": {"type": "json_schema", "schema": {"type": "object", "required": ["a"]}}}))
    assert req.max_tokens == 7 and req.sampling.top_k == 3
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[0].content == "sys"
    assert req.messages[2].tool_calls[0].id == "tu1" and req.messages[2].tool_calls[0].arguments == '{"a": 1}'
    assert req.messages[3].tool_call_id == "tu1" and req.messages[3].content == "Error: ok"
    assert req.tool_choice == "required" and req.parallel_tool_calls is False
    assert req.tools[0]["function"]["name"] == "f"
    assert req.json_schema == {"type": "object", "required": ["a"]}


def test_anthropic_bad_request_messages():
    with pytest.raises(BadRequest, match="max_tokens: Field required"):
        anthropic.chat_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(BadRequest, match=r"messages.0.role: must be 'user' or 'assistant'"):
        anthropic.chat_body({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]})


def test_anthropic_events_become_content_blocks():
    turn = ScriptedTurn([(TEXT, "Hi"), (TOOL, 0, "toolu_1", "f", '{"a":'), (TOOL, 0, "", "", "1}"),
                         (USAGE, 10, 4, 3), (FINISH, "tool_calls", None)])
    out = wire(anthropic.stream(turn, "m"))
    names = [name for name, _ in out]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert out[3][1]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert out[5][1]["content_block"] == {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    assert [out[i][1]["delta"]["partial_json"] for i in (6, 7)] == ['{"a":', "1}"]
    delta = out[9][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 3}


def test_anthropic_stop_sequence_and_errors():
    out = wire(anthropic.stream(ScriptedTurn([(TEXT, "a"), (USAGE, 1, 1, 0), (FINISH, "stop_sequence", "END")]), "m"))
    assert out[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    out = wire(anthropic.stream(ScriptedTurn([(TEXT, "a"), (ERROR, backend_failure())]), "m"))
    assert out[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "the backend crashed"}})


# -- Ollama ------------------------------------------------------------------------------------


def test_ollama_request_becomes_the_neutral_request():
    messages = ollama.chat_messages([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w", "arguments": {"c": "X"}}}]},
        {"role": "tool", "tool_name": "w", "content": "sunny"}])
    body = {"model": "m:latest", "options": {"temperature": 0.1, "num_predict": 4, "stop": ["x"]}, "format": "json",
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]}
    req = neutral(ollama.chat_body(body, messages))
    assert req.model == "m:latest"  # the core resolves the tag, after localai_before_inference
    assert req.sampling.temperature == 0.1 and req.max_tokens == 4 and req.stops == ["x"]
    assert req.json_schema == {"type": "object"}
    call = req.messages[1].tool_calls[0]
    assert call.name == "w" and call.arguments == '{"c": "X"}'
    assert req.messages[2].tool_call_id == call.id and req.messages[2].name == "w"


def test_ollama_bad_format():
    with pytest.raises(BadRequest, match='format must be "json" or a JSON schema'):
        ollama.chat_body({"model": "m", "format": 3}, [])


# -- Responses ---------------------------------------------------------------------------------


def test_responses_request_becomes_the_neutral_request():
    new = responses.input_messages([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"}])
    req = neutral(responses.chat_body({"model": "m", "instructions": "sys", "max_output_tokens": 8,
                                       "tools": [{"type": "function", "name": "f", "parameters": {}}],
                                       "tool_choice": {"type": "function", "name": "f"},
                                       "text": {"format": {"type": "json_object"}}}, [], new))
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[2].tool_calls[0].id == "c1" and req.messages[3].tool_call_id == "c1"
    assert req.max_tokens == 8 and req.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert req.json_schema == {"type": "object"}


def test_responses_bad_input():
    with pytest.raises(BadRequest, match="input: expected a string or a list of items"):
        responses.input_messages(42)


def responses_stream(events):
    body = {"model": "m", "store": False}
    return wire(responses.stream(ScriptedTurn(events), body, "resp_1", 1, "m", [], [], None, None))


def test_responses_events_become_typed_events():
    out = responses_stream([(TEXT, "Hel"), (TEXT, "lo"), (TOOL, 0, "call_1", "f", "{}"),
                            (USAGE, 5, 3, 2), (FINISH, "tool_calls", None)])
    names = [name for name, _ in out]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert [d["delta"] for n, d in out if n == "response.output_text.delta"] == ["Hel", "lo"]
    assert [d["sequence_number"] for _, d in out] == list(range(len(out)))
    done = [d for n, d in out if n == "response.output_text.done"][0]
    assert done["text"] == "Hello"
    args = [d for n, d in out if n == "response.function_call_arguments.done"][0]
    assert args["name"] == "f" and args["arguments"] == "{}"
    final = out[-1]
    assert final[0] == "response.completed"
    usage = final[1]["response"]["usage"]
    assert usage["input_tokens"] == 5 and usage["output_tokens"] == 3
    assert usage["input_tokens_details"]["cached_tokens"] == 2
    assert [item["type"] for item in final[1]["response"]["output"]] == ["message", "function_call"]


def test_responses_length_is_incomplete_and_errors_end_the_stream():
    out = responses_stream([(TEXT, "a"), (USAGE, 1, 1, 0), (FINISH, "length", None)])
    assert out[-1][0] == "response.incomplete"
    assert out[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    out = responses_stream([(TEXT, "a"), (ERROR, backend_failure())])
    assert out[-1][0] == "error" and out[-1][1]["message"] == "the backend crashed"
