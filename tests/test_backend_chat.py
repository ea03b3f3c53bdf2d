"""localai.backend_chat: the tool-call plan, the forced-call schema and the streamed call parser."""

from __future__ import annotations

import json

import pytest

from localai.backend_chat import PlanError, StreamShaper, ToolCallStream, forced_schema, parse_calls, plan

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"$ref": "#/$defs/Zone"}},
    "$defs": {"Zone": {"type": "string", "enum": ["UTC", "CET"]}}}}}
TOOLS = json.dumps([WEATHER, TIME])
USER = [{"role": "user", "content": "Weather in Paris?"}]


def test_required_forces_a_call_of_any_tool_and_describes_the_tools():
    p = plan(TOOLS, '"required"', {}, USER)
    assert p.mode == "forced" and p.tool_names == {"get_weather", "get_time"}
    names = [c["properties"]["name"]["const"] for c in p.schema["anyOf"]]
    assert names == ["get_weather", "get_time"]
    assert p.schema["$defs"] == {"Zone": {"type": "string", "enum": ["UTC", "CET"]}}  # hoisted for $ref
    assert p.messages[0]["role"] == "system" and "get_weather" in p.messages[0]["content"]
    assert p.messages[1] == USER[0]


def test_named_choice_forces_that_tool_only():
    p = plan(TOOLS, json.dumps({"type": "function", "function": {"name": "get_time"}}), {}, USER)
    assert p.tool_names == {"get_time"} and p.schema["properties"]["name"] == {"const": "get_time"}
    with pytest.raises(PlanError, match="nope"):
        plan(TOOLS, json.dumps({"type": "function", "function": {"name": "nope"}}), {}, USER)


def test_parallel_calls_are_an_array_and_none_hides_the_tools():
    assert forced_schema([WEATHER], True)["type"] == "array"
    p = plan(TOOLS, '"none"', {"json_schema": '{"type": "object"}'}, USER)
    assert p.mode == "" and p.schema == {"type": "object"} and p.messages == USER
    auto = plan(TOOLS, "", {}, USER)  # no choice with tools is auto
    assert auto.mode == "auto" and auto.schema is None and "get_time" in auto.messages[0]["content"]


def test_tool_history_is_written_as_text():
    history = USER + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    p = plan("", "", {}, history)
    assert p.messages[1] == {"role": "assistant", "content": '{"name": "get_weather", "parameters": {"city": "Paris"}}'}
    assert p.messages[2] == {"role": "user", "content": "Result of get_weather: sunny, 21 C"}


def test_parse_calls_accepts_only_calls_of_known_tools():
    calls = parse_calls('{"name": "get_weather", "parameters": {"city": "Oslo"}}', {"get_weather"})
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert calls[0]["id"].startswith("call_")
    assert parse_calls('{"name": "other", "arguments": {}}', {"get_weather"}) is None
    assert parse_calls("Sunny today.", {"get_weather"}) is None


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_streamed_calls_assemble_whatever_the_chunking(step):
    text = ('[{"name": "get_weather", "parameters": {"city": "São \\"P\\" {x}", "n": [1, {"a": 2}]}},'
            ' {"name":"get_time","parameters":{}}]')
    stream, calls = ToolCallStream(), {}
    for i in range(0, len(text), step):
        for index, cid, name, args in stream.feed(text[i:i + step]):
            call = calls.setdefault(index, {"id": cid, "name": name, "arguments": ""})
            assert not (cid and call["id"] != cid)
            call["arguments"] += args
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": 'São "P" {x}', "n": [1, {"a": 2}]}
    assert json.loads(calls[1]["arguments"]) == {}


def test_auto_stream_holds_json_back_and_passes_text_through():
    p = plan(TOOLS, '"auto"', {}, USER)
    shaper = StreamShaper(p)
    replies = shaper.feed(" ") + shaper.feed('{"name": "get_weather", ') + shaper.feed('"parameters": {"city": "Rome"}}')
    assert replies == []
    (end,) = shaper.finish()
    assert end.chat_deltas[0].tool_calls[0].name == "get_weather"
    text = StreamShaper(p)
    out = text.feed("Hello") + text.feed(" there") + text.finish()
    assert b"".join(r.message for r in out) == b"Hello there" and not any(r.chat_deltas for r in out)


def test_schemas_are_closed_without_changing_what_they_allow():
    p = plan("", "", {"json_schema": json.dumps({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"const": {"properties": {}}}}},
        "c": {"type": "object", "additionalProperties": True, "properties": {}}},
        "$defs": {"D": {"type": "object", "properties": {"x": {"type": "integer"}}}}})}, USER)
    assert p.schema["additionalProperties"] is False
    assert p.schema["properties"]["a"]["additionalProperties"] is False
    assert p.schema["properties"]["a"]["properties"]["b"] == {"const": {"properties": {}}}
    assert p.schema["properties"]["c"]["additionalProperties"] is True
    assert p.schema["$defs"]["D"]["additionalProperties"] is False


def test_completion_logprobs_are_reshaped_to_the_legacy_shape():
    from localai.dialects.openai_chat import completion_logprobs

    chat_shaped = {"content": [
        {"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi", "logprob": -0.5}, {"token": "Yo", "logprob": -2.0}]},
        {"token": "!", "logprob": -0.1, "top_logprobs": []}]}
    assert completion_logprobs(chat_shaped, 4) == {
        "tokens": ["Hi", "!"], "token_logprobs": [-0.5, -0.1],
        "top_logprobs": [{"Hi": -0.5, "Yo": -2.0}, {}], "text_offset": [4, 6]}
