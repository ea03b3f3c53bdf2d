"""OpenAI chat and completions: wire -> neutral request, and the core's events -> SSE / JSON (no server)."""

from __future__ import annotations

import asyncio

import pytest

from localai.chat.body import ChatCompletionRequest, parse
from localai.chat.request import chat_request
from localai.chat.turn import Completion
from localai.dialects.openai_chat import Chunks, chat_choice, encode_stream
from localai.errors import BadRequest
from tests.chat.events import ERROR, FINISH, TEXT, TOOL, USAGE, ScriptedTurn, sse_events


def test_chat_body_becomes_the_neutral_request():
    req = chat_request(parse(ChatCompletionRequest, {
        "model": "m", "max_tokens": 5, "max_completion_tokens": 9, "stop": ["END", ""], "temperature": 0.2,
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}}))
    assert req.model == "m" and req.max_tokens == 9 and req.stops == ["END"]
    assert req.sampling.temperature == 0.2 and req.sampling.top_p is None
    assert req.stream and req.include_usage and req.logprobs and req.top_logprobs == 2
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].text() == "a\nb"
    assert req.messages[2].tool_calls[0].id == "c1" and req.messages[2].tool_calls[0].name == "f"
    assert req.messages[3].tool_call_id == "c1"
    assert req.tools == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert req.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert req.parallel_tool_calls is False and req.json_schema == {"type": "array"}


def test_bad_chat_body_keeps_its_message():
    with pytest.raises(BadRequest) as caught:
        parse(ChatCompletionRequest, {"model": "m", "messages": []})
    assert caught.value.param == "messages" and "at least 1 item" in caught.value.message
    req = chat_request(parse(ChatCompletionRequest, {"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}))
    with pytest.raises(BadRequest, match="content parts of type 'image_url' are not supported"):
        req.messages[0].text()


def stream(events, include_usage=False):
    chunks = Chunks({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"},
                    lambda text, reason: {"index": 0, "delta": {"content": text}, "finish_reason": reason})

    async def run():
        return b"".join([item async for item in encode_stream(
            ScriptedTurn(events), chunks, {"index": 0, "delta": {}}, opening=[], include_usage=include_usage)])

    return sse_events(asyncio.run(run()))


def test_text_finish_and_usage_stream_as_chunks():
    out = stream([(TEXT, "Hel"), (TEXT, "lo"), (USAGE, 3, 2, 1), (FINISH, "length", None)], include_usage=True)
    data = [d for _, d in out]
    assert [d["choices"][0]["delta"]["content"] for d in data[:2]] == ["Hel", "lo"]
    assert data[2]["choices"][0]["finish_reason"] == "length"
    assert data[3]["choices"] == [] and data[3]["usage"]["prompt_tokens"] == 3
    assert data[3]["usage"]["prompt_tokens_details"] == {"cached_tokens": 1} and data[4] == "[DONE]"
    assert all(d["id"] == "x" and d["model"] == "m" for d in data[:4])


def test_tool_call_pieces_stream_with_id_and_name_first():
    out = stream([(TOOL, 0, "call_1", "f", ""), (TOOL, 0, "", "", '{"a":'), (TOOL, 0, "", "", "1}"),
                  (USAGE, 1, 3, 0), (FINISH, "tool_calls", None)])
    calls = [d["choices"][0]["delta"]["tool_calls"][0] for _, d in out[:3]]
    assert calls[0] == {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"a":'}}
    assert out[3][1]["choices"][0]["finish_reason"] == "tool_calls"
    assert len(out) == 5  # no usage chunk unless asked


def test_logprobs_ride_on_their_text_chunk():
    out = stream([(TEXT, "a", b'{"content":[{"token":"a","logprob":-0.5,"top_logprobs":[]}]}'),
                  (USAGE, 1, 1, 0), (FINISH, "stop", None)])
    choice = out[0][1]["choices"][0]
    assert choice["delta"]["content"] == "a" and choice["logprobs"]["content"][0]["logprob"] == -0.5


def test_a_mid_stream_error_is_an_error_event_then_done():
    from tests.chat.events import backend_failure

    out = stream([(TEXT, "a"), (ERROR, backend_failure())])
    assert out[1][1]["error"]["message"] == "the backend crashed" and out[2][1] == "[DONE]"


def test_non_streamed_choice_with_tool_calls():
    reply = Completion("", [{"id": "c", "name": "f", "arguments": "{}"}], None)
    choice = chat_choice(reply, "tool_calls", want_logprobs=False)
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    assert message["tool_calls"] == [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    plain = chat_choice(Completion("hi", [], {"content": []}), "stop_sequence", want_logprobs=True)
    assert plain["message"]["content"] == "hi" and plain["finish_reason"] == "stop"
    assert plain["logprobs"]["content"] == []
