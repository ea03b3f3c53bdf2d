"""End to end: tool calls and structured output through the Anthropic, Ollama and OpenAI Responses
dialects on the real SmolLM2 (calls and JSON forced by grammars from the schemas), driven by the
official ``anthropic``, ``ollama`` and ``openai`` clients, unchanged."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import ollama
import openai


MODEL = "smollm2"
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"],
        "additionalProperties": False}
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
ASK = "What is the weather like in Paris right now?"


def test_anthropic_forced_tool_use_then_tool_result(server):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=180)
    tools = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": CITY}]
    first = client.messages.create(model=MODEL, max_tokens=100, tools=tools, extra_body={"temperature": 0},
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": ASK}])
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather"
    jsonschema.validate(call.input, CITY)
    # the answer step without tools (as an agent's last turn): a 135M model would call again under auto
    second = client.messages.create(model=MODEL, max_tokens=40, tools=tools, extra_body={"temperature": 0},
                                    tool_choice={"type": "none"}, messages=[{"role": "user", "content": ASK},
                                              {"role": "assistant", "content": first.content},
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": call.id,
                                                                            "content": "Sunny, 21 degrees"}]}])
    assert second.content[0].type == "text" and second.content[0].text.strip()
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert not [block for block in second.content if block.type == "tool_use"]


def test_anthropic_streamed_tool_use_validates(server):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=180)
    tools = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": CITY}]
    with client.messages.stream(model=MODEL, max_tokens=100, tools=tools, tool_choice={"type": "any"},
                                extra_body={"temperature": 0}, messages=[{"role": "user", "content": ASK}]) as s:
        pieces = [e.delta.partial_json for e in s if e.type == "content_block_delta"
                  and e.delta.type == "input_json_delta"]
        final = s.get_final_message()
    assert pieces and final.stop_reason == "tool_use"
    jsonschema.validate(json.loads("".join(pieces)), CITY)
    assert final.content[-1].input == json.loads("".join(pieces))


def test_ollama_format_schema_is_enforced(server):
    client = ollama.Client(host=server.base_url, timeout=180)
    reply = client.chat(model=MODEL, format=PERSON, options={"temperature": 0, "num_predict": 100},
                        messages=[{"role": "user", "content": "Invent a person."}])
    jsonschema.validate(json.loads(reply.message.content), PERSON)
    streamed = "".join(part.message.content for part in client.chat(
        model=MODEL, format=PERSON, stream=True, options={"temperature": 0, "num_predict": 100},
        messages=[{"role": "user", "content": "Invent a person."}]))
    jsonschema.validate(json.loads(streamed), PERSON)
    generated = client.generate(model=MODEL, format="json", prompt="Describe Paris as JSON.",
                                options={"temperature": 0, "num_predict": 60})
    assert generated.done_reason == "length" or isinstance(json.loads(generated.response), dict)


def test_responses_function_call_round_trip_and_json_schema(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=180)
    tool = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
            "parameters": CITY, "strict": True}
    first = client.responses.create(model=MODEL, input=ASK, tools=[tool], tool_choice="required", temperature=0,
                                    max_output_tokens=100)
    (call,) = [item for item in first.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), CITY)
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=[tool], temperature=0,
                                     tool_choice="none",
                                     max_output_tokens=40, input=[{"type": "function_call_output",
                                                                   "call_id": call.call_id,
                                                                   "output": "Sunny, 21 degrees"}])
    assert second.output_text.strip() and [item.type for item in second.output] == ["message"]
    shaped = client.responses.create(model=MODEL, input="Invent a person.", temperature=0, max_output_tokens=100,
                                     text={"format": {"type": "json_schema", "name": "person", "schema": PERSON,
                                                      "strict": True}})
    jsonschema.validate(json.loads(shaped.output_text), PERSON)
