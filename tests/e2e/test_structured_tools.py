"""Structured output and tool calls on the real SmolLM2, through the official ``openai`` SDK
(issue 16). SmolLM2's chat template knows nothing of tools: the calls and the JSON replies
are forced by grammars compiled from the schemas, so every reply must validate."""

from __future__ import annotations

import json
from enum import Enum

import jsonschema
import pytest
from pydantic import BaseModel, Field


MODEL = "smollm2"


class Color(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    street: str = Field(max_length=40)
    city: str = Field(max_length=30)


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int
    favourite: Color
    home: Address
    nickname: str | None = None


SCHEMAS = {
    "flat": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                               "population": {"type": "integer"}},
             "required": ["city", "population"], "additionalProperties": False},
    "nested-enum-array": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 40},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["news", "sport", "tech"]},
                     "minItems": 1, "maxItems": 3},
            "meta": {"type": "object", "properties": {"draft": {"type": "boolean"}, "score": {"type": "number"}},
                     "required": ["draft", "score"], "additionalProperties": False},
        },
        "required": ["title", "tags", "meta"], "additionalProperties": False},
    "anyof-optional": {
        "type": "object",
        "properties": {"answer": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 20}]},
                       "note": {"type": "string", "maxLength": 20}},
        "required": ["answer"], "additionalProperties": False},
    "pydantic-defs": Person.model_json_schema(),
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"$ref": "#/$defs/Zone"}}, "required": ["zone"],
                   "$defs": {"Zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}}}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


def chat(client, messages, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 200)
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


def schema_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name.replace("-", "_"), "schema": schema, "strict": True}}


def streamed(stream):
    """The text, tool calls and finish reasons of a streamed reply; checks OpenAI's delta shape."""
    text, calls, reasons = [], {}, []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            for delta in choice.delta.tool_calls or []:
                assert delta.index is not None
                if delta.index not in calls:
                    assert delta.id and delta.type == "function" and delta.function.name
                    calls[delta.index] = {"id": delta.id, "name": delta.function.name, "arguments": ""}
                else:
                    assert not delta.id and not delta.function.name
                calls[delta.index]["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    return "".join(text), [calls[i] for i in sorted(calls)], reasons


def check_call(name, arguments):
    tool = next(t["function"] for t in TOOLS if t["function"]["name"] == name)
    args = json.loads(arguments)
    jsonschema.validate(args, tool["parameters"])
    return args


@pytest.mark.parametrize("name", SCHEMAS)
def test_json_schema_replies_validate(client, name):
    schema = SCHEMAS[name]
    reply = chat(client, [{"role": "user", "content": "Invent an example record."}],
                 response_format=schema_format(name, schema))
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    jsonschema.validate(json.loads(choice.message.content), schema)
    if name == "pydantic-defs":
        assert isinstance(Person.model_validate_json(choice.message.content), Person)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", ["nested-enum-array", "pydantic-defs"])
def test_json_schema_streamed_replies_validate(client, name, seed):
    """Sampled (temperature 0.8), so the grammar meets more than the greedy path; seeded, so a
    failure repeats."""
    schema = SCHEMAS[name]
    text, calls, reasons = streamed(chat(client, [{"role": "user", "content": "Describe something."}],
                                         response_format=schema_format(name, schema), stream=True, temperature=0.8,
                                         seed=seed))
    assert reasons == ["stop"] and not calls, text
    jsonschema.validate(json.loads(text), schema)


def test_json_object_is_an_object(client):
    reply = chat(client, [{"role": "user", "content": 'Reply with the JSON object {"name": "Tom", "age": 3}.'}],
                 response_format={"type": "json_object"}, max_tokens=200)
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_json_schema_cut_off_is_length(client):
    reply = chat(client, [{"role": "user", "content": "Invent a record."}], max_tokens=5,
                 response_format=schema_format("p", SCHEMAS["pydantic-defs"]))
    assert reply.choices[0].finish_reason == "length"


def test_required_tool_call_is_forced_and_validates(client):
    reply = chat(client, ASK, tools=TOOLS, tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    check_call(call.function.name, call.function.arguments)


@pytest.mark.parametrize("tool", ["get_weather", "get_time"])
def test_named_tool_call_is_forced(client, tool):
    reply = chat(client, ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": tool}})
    (call,) = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == tool
    check_call(tool, call.function.arguments)


def test_streamed_tool_call_deltas_assemble(client):
    text, calls, reasons = streamed(chat(client, ASK, tools=TOOLS, stream=True,
                                         tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert reasons == ["tool_calls"] and text == ""
    (call,) = calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    assert check_call("get_weather", call["arguments"])["city"]


def test_parallel_tool_calls_are_a_list_of_valid_calls(client):
    reply = chat(client, [{"role": "user", "content": "Weather in Paris and in Rome?"}], tools=[WEATHER],
                 tool_choice="required", parallel_tool_calls=True, max_tokens=150)
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and calls
    assert len({c.id for c in calls}) == len(calls)
    for call in calls:
        check_call(call.function.name, call.function.arguments)


def test_tool_choice_none_gives_text(client):
    reply = chat(client, ASK, tools=TOOLS, tool_choice="none", max_tokens=30)
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_two_step_tool_loop(client):
    messages = list(ASK)
    first = chat(client, messages, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    args = check_call("get_weather", call.function.arguments)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"city": args["city"], "temperature": 21, "sky": "sunny"})})
    answer = chat(client, messages, tools=TOOLS, tool_choice="none", max_tokens=60)
    choice = answer.choices[0]
    assert choice.message.tool_calls is None and choice.message.content.strip()
    # the call and the tool's result reached the prompt: it is longer than the question alone
    alone = chat(client, ASK, max_tokens=1).usage.prompt_tokens
    assert answer.usage.prompt_tokens > alone + 20
