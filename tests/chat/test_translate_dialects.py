"""Anthropic, Ollama and Responses: wire -> neutral request, and the core's events -> wire (no server)."""

from __future__ import annotations

import asyncio

import pytest

from localai.chat.body import ChatCompletionRequest, parse
from localai.chat.request import chat_request
from localai.dialects import anthropic, anthropic_wire, ollama, ollama_wire, responses, responses_tools, responses_wire
from localai.dialects.wire import parse_wire
from localai.errors import BadRequest
from localai.request_limits import MAX_MESSAGES, MAX_STOP_SEQUENCES, MAX_TOOLS, LimitExceeded
from tests.chat.events import ERROR, FINISH, TEXT, TOOL, USAGE, ScriptedTurn, backend_failure, sse_events


def neutral(body):
    return chat_request(parse(ChatCompletionRequest, body))


def wire(response) -> list:
    async def run():
        return b"".join([chunk async for chunk in response.response])

    return sse_events(asyncio.run(run()))


# -- Anthropic ---------------------------------------------------------------------------------


def anthropic_body(body):
    return anthropic.chat_body(parse_wire(anthropic_wire.MessagesRequest, body))


def test_anthropic_request_becomes_the_neutral_request():
    req = neutral(anthropic_body({
        "model": "m", "max_tokens": 7, "metadata": {"user_id": "u"}, "thinking": {"type": "disabled"},
        "context_management": {"edits": []}, "system": [{"type": "text", "text": "sys"}], "top_k": 3,
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


USER = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize("body, message", [
    ({"model": "m", "messages": USER}, r"^max_tokens: Field required$"),
    ({"max_tokens": 1, "messages": USER}, r"^model: Field required$"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]},
     r"^messages\.0\.role: must be 'user', 'assistant' or 'system'$"),
    ({"model": "m", "max_tokens": 1, "messages": [USER[0], {"role": "user", "content": 5}]},
     r"^messages\.1\.content: expected a string or a list of content blocks$"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "image", "source": {"data": "x"}}]}]},
     r"^messages\.0\.content\.1\.source\.type: Field required$"),
    ({"model": "m", "max_tokens": 1, "messages": USER, "tool_choice": {"type": "sometimes"}},
     r"^tool_choice\.type: Input should be 'auto', 'any', 'tool' or 'none'$"),
    ({"model": "m", "max_tokens": 1, "messages": USER, "tools": [{"input_schema": {}}]}, r"^tools\.0\.name: Field"),
    ({"model": "m", "max_tokens": 1, "messages": USER, "stop_sequences": "END"}, r"^stop_sequences: Input should"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
     r"^messages\.0\.content: blocks of type 'document' are not supported in user messages$"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]},
     r"blocks of type 'tool_result' are not supported in assistant messages"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]}, r"source: Field required"),
    ({"model": "m", "max_tokens": 1, "messages": USER, "tools": [{"name": "s", "type": "web_search_20250305"}]},
     r"^tools\.0: server tools of type 'web_search_20250305' are not supported$"),
])
def test_anthropic_bad_requests_name_the_field(body, message):
    with pytest.raises(BadRequest, match=message) as info:
        anthropic_body(body)
    assert info.value.status == 400 and info.value.param


def test_anthropic_limits_are_checked_before_the_body_is_parsed():
    with pytest.raises(LimitExceeded, match="max_messages"):
        anthropic_body({"model": "m", "max_tokens": 1, "messages": [{"role": "bogus"}] * (MAX_MESSAGES + 1)})
    with pytest.raises(LimitExceeded, match="max_stop_sequences"):
        anthropic_body({"model": "m", "max_tokens": 1, "messages": USER,
                        "stop_sequences": ["s"] * (MAX_STOP_SEQUENCES + 1)})


def test_anthropic_count_tokens_needs_no_max_tokens():
    body = anthropic.chat_body(parse_wire(anthropic_wire.CountTokensRequest, {"model": "m", "messages": USER}))
    assert "max_tokens" not in body and body["messages"] == USER


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
    body = {"model": "m:latest", "keep_alive": "5m", "think": False,
            "options": {"temperature": 0.1, "num_predict": 4, "stop": ["x"], "num_ctx": 4096}, "format": "json",
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "w", "arguments": {"c": "X"}}}]},
                {"role": "tool", "tool_name": "w", "content": "sunny"}]}
    parsed = parse_wire(ollama_wire.ChatRequest, body)
    assert parsed.keep_alive == "5m" and parsed.think is False
    req = neutral(ollama.chat_body(parsed, ollama.chat_messages(parsed.messages)))
    assert req.model == "m:latest"  # the core resolves the tag, after localai_before_inference
    assert req.sampling.temperature == 0.1 and req.max_tokens == 4 and req.stops == ["x"]
    assert req.json_schema == {"type": "object"}
    call = req.messages[1].tool_calls[0]
    assert call.name == "w" and call.arguments == '{"c": "X"}'
    assert req.messages[2].tool_call_id == call.id and req.messages[2].name == "w"


def test_ollama_generate_becomes_the_neutral_request():
    parsed = parse_wire(ollama_wire.GenerateRequest, {
        "name": "m", "prompt": "hi", "system": "sys", "options": {"num_predict": -1, "seed": 3},
        "format": {"type": "object", "required": ["a"]}, "context": [1, 2]})
    req = neutral(ollama.chat_body(parsed, ollama.generate_messages(parsed)))
    assert req.model == "m" and [(m.role, m.content) for m in req.messages] == [("system", "sys"), ("user", "hi")]
    assert req.max_tokens is None and req.sampling.seed == 3  # num_predict -1: no limit
    assert req.json_schema == {"type": "object", "required": ["a"]}


@pytest.mark.parametrize("model, body, message", [
    (ollama_wire.ChatRequest, {"model": "m", "format": 3}, r'^format: must be "json" or a JSON schema$'),
    (ollama_wire.ChatRequest, {"messages": []}, r"^model is required$"),
    (ollama_wire.ChatRequest, {"model": "m", "messages": [{"role": "bot", "content": "x"}]},
     r"^messages\.0\.role: must be system, user, assistant or tool$"),
    (ollama_wire.ChatRequest, {"model": "m", "options": "hot"}, r"^options: Input should be a valid dictionary"),
    (ollama_wire.ChatRequest, {"model": "m", "options": {"temperature": "hot"}},
     r"^options\.temperature: Input should be a valid number"),
    (ollama_wire.GenerateRequest, {"model": "m", "prompt": ["a"]}, r"^prompt: Input should be a valid string$"),
])
def test_ollama_bad_requests_name_the_field(model, body, message):
    with pytest.raises(BadRequest, match=message):
        parse_wire(model, body)


def test_ollama_limits_are_checked_before_the_body_is_parsed():
    with pytest.raises(LimitExceeded, match="max_tools"):
        parse_wire(ollama_wire.ChatRequest, {"model": "m", "tools": [None] * (MAX_TOOLS + 1)})
    with pytest.raises(LimitExceeded, match="max_stop_sequences"):
        parse_wire(ollama_wire.GenerateRequest, {"model": "m", "options": {"stop": [0] * (MAX_STOP_SEQUENCES + 1)}})


# -- Responses ---------------------------------------------------------------------------------


def responses_request(body):
    return parse_wire(responses_wire.CreateRequest, body)


def test_responses_request_becomes_the_neutral_request():
    parsed = responses_request({
        "model": "m", "instructions": "sys", "max_output_tokens": 8, "store": False, "previous_response_id": None,
        "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"], "metadata": {"k": "v"},
        "prompt_cache_key": "p", "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "tool_choice": {"type": "function", "name": "f"}, "text": {"format": {"type": "json_object"}},
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
            {"role": "user", "content": "more"}]})
    plan = responses_tools.plan_tools(parsed)
    req = neutral(responses.chat_body(parsed, [], responses.input_messages(parsed.input), plan))
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool", "user"]
    assert req.messages[2].tool_calls[0].id == "c1" and req.messages[3].tool_call_id == "c1"
    assert req.max_tokens == 8 and req.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert req.json_schema == {"type": "object"}
    echoed = responses.response_object("resp_1", parsed, "m", 1, "completed", [], None)
    assert echoed["store"] is False and echoed["metadata"] == {"k": "v"}
    assert echoed["tool_choice"] == {"type": "function", "name": "f"}
    assert echoed["tools"] == [{"type": "function", "name": "f", "parameters": {}, "strict": None}]


@pytest.mark.parametrize("body, message", [
    ({"model": "m", "input": 42}, r"^input: expected a string or a list of items$"),
    ({"model": "m", "input": [{"type": "bogus"}]}, r"^input\.0: items of type 'bogus' are not supported$"),
    ({"model": "m", "input": [{"type": "message", "role": "tool", "content": "x"}]},
     r"^input\.0\.role: Input should be 'user', 'assistant', 'system' or 'developer'$"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     r"^input\.0\.content: content parts of type 'input_file' are not supported$"),
    ({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}},
     r"^tool_choice: requires the tool 'web_search', which this server cannot run"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, r"^text\.format\.type: Input should be"),
    ({"model": "m", "input": "x", "store": "maybe"}, r"^store: Input should be a valid boolean"),
    ({"model": "m", "input": []}, r"^input: at least one input item is required$"),
])
def test_responses_bad_requests_name_the_field(body, message):
    with pytest.raises(BadRequest, match=message):
        parsed = responses_request(body)
        responses.chat_body(parsed, [], responses.input_messages(parsed.input), responses_tools.plan_tools(parsed))


def test_responses_limits_are_checked_before_the_body_is_parsed():
    with pytest.raises(LimitExceeded, match="max_messages"):
        responses_request({"model": "m", "input": [{"type": "bogus"}] * (MAX_MESSAGES + 1)})


def responses_stream(events):
    req = responses_request({"model": "m", "store": False})
    plan = responses_tools.plan_tools(req)
    return wire(responses.stream(ScriptedTurn(events), req, plan, "resp_1", 1, "m", [], [], None, None))


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
