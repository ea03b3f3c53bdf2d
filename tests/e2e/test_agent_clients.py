"""The agent and extraction libraries people point at a local server, unchanged, on the real
SmolLM2 (issue 16): instructor (TOOLS and JSON_SCHEMA modes), langchain-openai
(``with_structured_output`` both methods, ``bind_tools``) and the openai-agents SDK (an agent
with a function tool on ``OpenAIChatCompletionsModel``). Every HTTP request is counted: one
call, one request, so a client's own retry can never be what makes a test pass."""

from __future__ import annotations

import asyncio
import json

import httpx
import instructor
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.tools import tool as lc_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


MODEL = "smollm2"


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population_millions: float


class Counter:
    def __init__(self):
        self.requests: list[str] = []

    def __call__(self, request):
        self.requests.append(f"{request.method} {request.url.path}")

    def chat_calls(self) -> int:
        return sum(r.endswith("/chat/completions") for r in self.requests)


@pytest.fixture
def counter():
    return Counter()


@pytest.fixture
def client(server, counter):
    http = httpx.Client(event_hooks={"request": [counter]}, timeout=180)
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, http_client=http)


ASK = [{"role": "user", "content": "Tell me about Paris."}]


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_instructor_extracts_a_valid_model(client, counter, mode):
    patched = instructor.from_openai(client, mode=mode)
    city = patched.chat.completions.create(model=MODEL, response_model=City, messages=ASK, max_retries=1,
                                           temperature=0, max_tokens=200)
    assert isinstance(city, City) and city.name
    assert counter.chat_calls() == 1


def langchain_chat(server, counter, **kwargs):
    http = httpx.Client(event_hooks={"request": [counter]}, timeout=180)
    return ChatOpenAI(model=MODEL, base_url=server.base_url + "/v1", api_key="x", max_retries=0, temperature=0,
                      max_tokens=200, http_client=http, **kwargs)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(server, counter, method):
    structured = langchain_chat(server, counter).with_structured_output(City, method=method)
    city = structured.invoke("Tell me about Paris.")
    assert isinstance(city, City) and city.name
    assert counter.chat_calls() == 1


@lc_tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    return f"21 degrees {unit} in {city}"


def test_langchain_bind_tools(server, counter):
    bound = langchain_chat(server, counter).bind_tools([get_weather], tool_choice="get_weather")
    message = bound.invoke("What is the weather in Rome?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str) and call["id"]
    assert get_weather.invoke(call["args"]).startswith("21 degrees")
    assert counter.chat_calls() == 1


def test_openai_agents_function_tool(server, counter):
    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def lookup_population(city: str) -> str:
        """Look up the population of a city."""
        seen.append(city)
        return json.dumps({"city": city, "population": 2100000})

    async def run():
        http = httpx.AsyncClient(event_hooks={"request": [lambda r: _async_count(counter, r)]}, timeout=180)
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, http_client=http)
        agent = Agent(name="researcher", instructions="Use the tool to answer.", tools=[lookup_population],
                      model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
                      model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=200),
                      tool_use_behavior="stop_on_first_tool")
        try:
            return await Runner.run(agent, "How many people live in Paris?", max_turns=2)
        finally:
            await http.aclose()

    result = asyncio.run(run())
    assert len(seen) == 1 and seen[0]
    assert json.loads(result.final_output)["population"] == 2100000
    assert counter.chat_calls() == 1


async def _async_count(counter, request):
    counter(request)
