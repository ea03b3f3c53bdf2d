"""Request content never holds the event loop hostage (issue 24, items 5 and 6; SECURITY.md):
deep or large JSON schemas, many or long stop sequences, many tools or messages, in every dialect
(OpenAI chat, Responses, Anthropic, Ollama), against a real server. Each is refused with a 400 in
the dialect's shape naming the limit, or handled quickly; ``/healthz`` keeps answering meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import orjson
import pytest

from localai.request_limits import MAX_MESSAGES, MAX_SCHEMA_DEPTH, MAX_STOP_LENGTH, MAX_STOP_SEQUENCES, MAX_TOOLS
from localai.testing.server import LocalAIServer
from tests.dialects.helpers import dialect_models, tool_backend_env

USER = [{"role": "user", "content": "one two three four five six"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dos")
    dialect_models(root / "models")
    env = tool_backend_env(root)
    with LocalAIServer(root / "models", env=env, cwd=root) as srv:
        # load the model first: the timings below are of the requests, not of a backend starting
        assert post(srv, "/v1/chat/completions", {"model": "echo", "messages": USER}).status_code == 200
        yield srv


def nested(levels: int) -> dict:
    """The report's schema: ``levels`` objects, each the only property of the one above."""
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def exponential_defs(count: int) -> dict:
    """``$defs`` where each definition refers to the next twice (2**count when expanded), the last to itself."""
    defs = {f"d{i}": {"type": "object", "properties": {"l": {"$ref": f"#/$defs/d{i + 1}"},
                                                       "r": {"$ref": f"#/$defs/d{i + 1}"}}} for i in range(count)}
    defs[f"d{count}"] = {"anyOf": [{"type": "null"}, {"$ref": f"#/$defs/d{count}"}]}
    return {"type": "object", "properties": {"root": {"$ref": "#/$defs/d0"}}, "$defs": defs}


def schema_requests(schema: dict) -> list[tuple[str, dict]]:
    """``schema`` as the reply's format and as a forced tool's parameters, in every dialect."""
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    return [
        ("/v1/chat/completions", {"model": "echo", "messages": USER, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
        ("/v1/chat/completions", {"model": "echo", "messages": USER, "tools": [tool], "tool_choice": "required"}),
        ("/v1/responses", {"model": "echo", "input": "hi",
                           "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}}}),
        ("/v1/responses", {"model": "echo", "input": "hi", "tool_choice": "required",
                           "tools": [{"type": "function", "name": "f", "parameters": schema}]}),
        ("/v1/messages", {"model": "echo", "max_tokens": 16, "messages": USER,
                          "output_config": {"format": {"type": "json_schema", "schema": schema}}}),
        ("/v1/messages", {"model": "echo", "max_tokens": 16, "messages": USER, "tool_choice": {"type": "any"},
                          "tools": [{"name": "f", "input_schema": schema}]}),
        ("/api/chat", {"model": "echo", "messages": USER, "stream": False, "format": schema}),
        ("/api/chat", {"model": "echo", "messages": USER, "stream": False, "tools": [tool]}),
    ]


def assert_limit_error(route: str, response: httpx.Response, limit: str) -> None:
    """A 400 in the route's dialect shape whose message names ``limit``."""
    assert response.status_code == 400, (route, response.status_code, response.text[:300])
    body = response.json()
    if route.startswith("/api/"):  # Ollama: {"error": "message"}
        message = body["error"]
    elif route.startswith("/v1/messages"):  # Anthropic: {"type": "error", "error": {"type", "message"}}
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        message = body["error"]["message"]
    else:  # OpenAI chat and Responses: {"error": {"message", "type", "code"}}
        assert body["error"]["code"] == "limit_exceeded", body
        message = body["error"]["message"]
    assert isinstance(message, str) and limit in message, (route, message)


def post(server, route: str, body: dict, timeout: float = 30) -> httpx.Response:
    return httpx.post(server.url(route), content=orjson.dumps(body),
                      headers={"content-type": "application/json"}, timeout=timeout)


def test_the_reported_nested_schema_is_answered_quickly_in_every_dialect(server):
    """22 levels (the report's 18 took 2.7 s, doubling per level): now each is a quick 200."""
    for route, body in schema_requests(nested(22)):
        started = time.perf_counter()
        response = post(server, route, body)
        took = time.perf_counter() - started
        assert response.status_code == 200, (route, response.text[:300])
        assert took < 1.0, (route, took)


def test_ref_expansion_and_ref_cycles_are_not_expanded(server):
    """A ``$defs`` whose expansion is 2**40 values, ending in a self-reference, costs its size only."""
    for route, body in schema_requests(exponential_defs(40)):
        started = time.perf_counter()
        response = post(server, route, body)
        assert response.status_code == 200, (route, response.text[:300])
        assert time.perf_counter() - started < 1.0, route


def test_too_deep_a_schema_is_a_400_naming_the_limit_in_every_dialect(server):
    for route, body in schema_requests(nested(MAX_SCHEMA_DEPTH)):  # 2 levels per object: twice the limit
        assert_limit_error(route, post(server, route, body), "max_schema_depth")


def test_too_large_schemas_are_a_400_naming_the_limit_in_every_dialect(server):
    wide = {"type": "string", "enum": [str(i) for i in range(60_000)]}
    for route, body in schema_requests(wide):
        assert_limit_error(route, post(server, route, body), "max_schema_values")
    # many tools, each under the limit, add up
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"enum": list(range(500))}}}
             for i in range(110)]
    response = post(server, "/v1/chat/completions", {"model": "echo", "messages": USER, "tools": tools})
    assert_limit_error("/v1/chat/completions", response, "max_schema_values")


def test_stop_sequences_have_the_same_limits_in_every_dialect(server):
    many = [f"stop-{i}-" + "x" * 370 for i in range(801)]  # the report's ~0.3 MB
    long = ["y" * (MAX_STOP_LENGTH + 1)]
    too_many = [f"s{i}" for i in range(MAX_STOP_SEQUENCES + 1)]
    for stops, limit in ((many, "max_stop_sequences"), (too_many, "max_stop_sequences"), (long, "max_stop_length")):
        cases = [("/v1/messages", {"model": "echo", "max_tokens": 16, "messages": USER, "stop_sequences": stops}),
                 ("/v1/chat/completions", {"model": "echo", "messages": USER, "stop": stops}),
                 ("/v1/completions", {"model": "echo", "prompt": "hi", "stop": stops}),
                 ("/api/chat", {"model": "echo", "messages": USER, "stream": False, "options": {"stop": stops}}),
                 ("/api/generate", {"model": "echo", "prompt": "hi", "stream": False, "options": {"stop": stops}})]
        for route, body in cases:
            assert_limit_error(route, post(server, route, body), limit)


def test_the_most_stop_sequences_allowed_still_cut_a_long_stream(server):
    """16 stops of the longest length, one of which spans streamed pieces, on a 3000-word reply."""
    words = " ".join(f"w{i}" for i in range(3000))
    stops = ["z" * MAX_STOP_LENGTH] * (MAX_STOP_SEQUENCES - 1) + ["w2998 w2999"]
    body = {"model": "echo", "max_tokens": 4000, "stream": True, "stop_sequences": stops,
            "messages": [{"role": "user", "content": words}]}
    started = time.perf_counter()
    with httpx.stream("POST", server.url("/v1/messages"), json=body, timeout=30) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert time.perf_counter() - started < 5.0
    assert '"stop_sequence":"w2998 w2999"' in text and '"stop_reason":"stop_sequence"' in text
    assert "w2997" in text and "w2998" not in text.replace('"stop_sequence":"w2998', "")


def test_tool_and_message_counts_have_the_same_limits_in_every_dialect(server):
    fn = {"name": "f", "parameters": {"type": "object"}}
    openai_tools = [{"type": "function", "function": fn}] * (MAX_TOOLS + 1)
    many_tools = [
        ("/v1/chat/completions", {"model": "echo", "messages": USER, "tools": openai_tools}),
        ("/v1/responses", {"model": "echo", "input": "hi", "tools": [{"type": "function", **fn}] * (MAX_TOOLS + 1)}),
        ("/v1/messages", {"model": "echo", "max_tokens": 8, "messages": USER,
                          "tools": [{"name": "f", "input_schema": {"type": "object"}}] * (MAX_TOOLS + 1)}),
        ("/api/chat", {"model": "echo", "messages": USER, "stream": False, "tools": openai_tools}),
    ]
    for route, body in many_tools:
        assert_limit_error(route, post(server, route, body), "max_tools")
    messages = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
    many_messages = [
        ("/v1/chat/completions", {"model": "echo", "messages": messages}),
        ("/v1/responses", {"model": "echo", "input": messages}),
        ("/v1/messages", {"model": "echo", "max_tokens": 8, "messages": messages}),
        ("/api/chat", {"model": "echo", "messages": messages, "stream": False}),
    ]
    for route, body in many_messages:
        assert_limit_error(route, post(server, route, body), "max_messages")


def test_healthz_answers_within_100ms_while_hostile_requests_run(server):
    hostile = schema_requests(nested(22)) + schema_requests(exponential_defs(40)) + [
        ("/v1/messages", {"model": "echo", "max_tokens": 16, "messages": USER,
                          "stop_sequences": [f"stop-{i}-" + "x" * 370 for i in range(801)]}),
        ("/v1/chat/completions", {"model": "echo", "messages": USER, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": nested(100)}}}),
    ]
    bodies = [(route, orjson.dumps(body)) for route, body in hostile]  # encoded before the clock starts
    latencies: list[float] = []
    statuses: list[int] = []
    done = threading.Event()

    def probe():
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                started = time.perf_counter()
                assert client.get(server.url("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    def attack():
        with httpx.Client(timeout=30, headers={"content-type": "application/json"}) as client:
            for _ in range(3):
                for route, content in bodies:
                    statuses.append(client.post(server.url(route), content=content).status_code)

    prober = threading.Thread(target=probe)
    attackers = [threading.Thread(target=attack) for _ in range(3)]
    prober.start()
    for thread in attackers:
        thread.start()
    for thread in attackers:
        thread.join()
    done.set()
    prober.join()
    assert len(statuses) == 3 * 3 * len(bodies) and set(statuses) <= {200, 400}, statuses
    assert len(latencies) >= 10, latencies
    assert max(latencies) < 0.1, sorted(latencies)[-5:]
