"""Tool calls and structured output through the three dialects, on a real ``local-ai run`` whose
backend answers with deterministic tool calls (``tool_backend.py``): the official ``anthropic``,
``ollama`` and ``openai`` (``client.responses``) clients, unchanged."""

from __future__ import annotations

import json

import anthropic
import ollama
import openai
import pytest

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
FUNCTION = {"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": WEATHER["input_schema"]}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.fixture(scope="module")
def client(dialect_server):
    return anthropic.Anthropic(base_url=dialect_server.base_url, api_key="x", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def oclient(dialect_server):
    return ollama.Client(host=dialect_server.base_url, timeout=30)


@pytest.fixture(scope="module")
def rclient(dialect_server):
    return openai.OpenAI(base_url=dialect_server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


# -- Anthropic -------------------------------------------------------------------------------


def test_anthropic_forced_tool_use_and_tool_result_round_trip(client):
    first = client.messages.create(model="echo", max_tokens=64, tools=[WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "echo"} and call.id
    second = client.messages.create(model="echo", max_tokens=64, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]}])
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    assert "sunny, 21C" in second.content[0].text


def test_anthropic_any_tool_streamed(client):
    with client.messages.stream(model="echo", max_tokens=64, tools=[WEATHER], tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e for e in events if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["tool_use"]
    pieces = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
    assert len(pieces) == 2 and "".join(pieces) == '{"city": "echo"}'
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "echo"}


def test_anthropic_structured_output(client):
    message = client.messages.create(model="echo", max_tokens=64, messages=[{"role": "user", "content": "x"}],
                                     output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    assert json.loads(message.content[0].text) == {"keys": ["age", "name"]}


# -- Ollama ----------------------------------------------------------------------------------


def test_ollama_tool_calls_with_object_arguments(oclient):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                               "parameters": WEATHER["input_schema"]}}]
    reply = oclient.chat(model="echo", tools=tools, messages=[{"role": "user", "content": "CALL_TOOL Paris"}])
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "echo"}
    streamed = list(oclient.chat(model="echo", tools=tools, stream=True,
                                 messages=[{"role": "user", "content": "CALL_TOOL Paris"}]))
    calls = [c for part in streamed for c in (part.message.tool_calls or [])]
    assert [c.function.arguments for c in calls] == [{"city": "echo"}] and streamed[-1].done
    answered = oclient.chat(model="echo", tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                         "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"}])
    assert "sunny" in answered.message.content and not answered.message.tool_calls


def test_ollama_format_schema_and_json(oclient):
    reply = oclient.chat(model="echo", format=SCHEMA, messages=[{"role": "user", "content": "x"}])
    assert json.loads(reply.message.content) == {"keys": ["age", "name"]}
    generated = oclient.generate(model="echo", format="json", prompt="x")
    assert json.loads(generated.response) == {"keys": []}


# -- Responses -------------------------------------------------------------------------------


def test_responses_function_call_round_trip(rclient):
    first = rclient.responses.create(model="echo", input="Weather in Paris?", tools=[FUNCTION],
                                     tool_choice={"type": "function", "name": "get_weather"})
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "echo"} and call.call_id
    second = rclient.responses.create(model="echo", previous_response_id=first.id, tools=[FUNCTION], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert "sunny, 21C" in second.output_text and second.output[0].type == "message"


def test_responses_streamed_function_call_events(rclient):
    with rclient.responses.stream(model="echo", input="Weather?", tools=[FUNCTION], tool_choice="required") as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (call,) = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "echo"}


def test_responses_text_format_json_schema(rclient):
    response = rclient.responses.create(model="echo", input="x", text={"format": {
        "type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}})
    assert json.loads(response.output_text) == {"keys": ["age", "name"]}
    assert response.text.format.type == "json_schema"
    assert json.loads(rclient.responses.create(model="echo", input="x", text={"format": {"type": "json_object"}})
                      .output_text) == {"keys": []}


def test_openai_agents_calls_a_function_tool(dialect_server):
    import asyncio

    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run():
        model = OpenAIResponsesModel(model="echo", openai_client=openai.AsyncOpenAI(
            base_url=dialect_server.base_url + "/v1", api_key="x", max_retries=0))
        # the tool is forced once; after it ran, the agent asks again with tool_choice reset to auto
        agent = Agent(name="weather", model=model, tools=[get_weather],
                      model_settings=ModelSettings(tool_choice="required"))
        return (await Runner.run(agent, "Weather in Paris?")).final_output

    output = asyncio.run(run())
    assert calls == ["echo"] and "sunny in echo" in output


def test_sdk_parse_helpers_get_validated_objects(client, rclient):
    from pydantic import BaseModel

    class Keys(BaseModel):
        keys: list[str]

    parsed = rclient.responses.parse(model="echo", input="x", text_format=Keys)
    assert parsed.output_parsed == Keys(keys=["keys"])  # the backend saw the model's own JSON schema
    message = client.messages.parse(model="echo", max_tokens=64, output_format=Keys,
                                    messages=[{"role": "user", "content": "x"}])
    assert message.parsed_output == Keys(keys=["keys"])
