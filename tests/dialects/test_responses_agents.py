"""What coding agents (Codex) send to ``/v1/responses``, on a real ``local-ai run`` (the echo backend
with deterministic tool calls): namespace tools, hosted tools the server cannot run, developer
messages and the fields Codex adds."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from localai.dialects.responses_tools import DROPPED_HEADER

PARAMS = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
NAMESPACE = {"type": "namespace", "name": "mcp__docs__", "description": "Docs server",
             "tools": [{"type": "function", "name": "lookup", "description": "Look up", "parameters": PARAMS,
                        "strict": False}]}
HOSTED = {"type": "web_search", "external_web_access": False}


def function(name: str) -> dict:
    return {"type": "function", "name": name, "description": name, "strict": False,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


def codex_first_request(**extra) -> dict:
    """A request shaped like Codex 0.171's first one: 9 tools, among them a namespace and web_search."""
    tools = [function(n) for n in ("exec_command", "write_stdin", "update_plan", "view_image",
                                   "list_mcp_resources", "read_mcp_resource")]
    tools += [NAMESPACE, HOSTED, {"type": "custom", "name": "apply_patch", "description": "Patch files",
                                  "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]
    return {"model": "echo", "instructions": "You are Codex.", "stream": True, "store": False, "tools": tools,
            "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199-session",
            "client_metadata": {"originator": "codex_exec"},
            "input": [{"type": "message", "role": "developer",
                       "content": [{"type": "input_text", "text": "<permissions>sandboxed</permissions>"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}],
            **extra}


def sse_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.fixture(scope="module")
def client(dialect_server):
    return openai.OpenAI(base_url=dialect_server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def test_codex_first_request_streams(dialect_server):
    response = httpx.post(dialect_server.url("/v1/responses"), json=codex_first_request(), timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers[DROPPED_HEADER] == "web_search,custom:apply_patch"
    events = sse_events(response)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]
    assert final["type"] == "response.completed"
    (item,) = final["response"]["output"]
    # the developer message and the instructions are one system message, before the user's
    text = item["content"][0]["text"]
    assert text.startswith("echo: system: You are Codex.") and "<permissions>sandboxed</permissions>" in text
    assert text.index("sandboxed") < text.index("user: hi there")
    # not stored (store: false): a later GET is a 404
    assert httpx.get(dialect_server.url(f"/v1/responses/{final['response']['id']}")).status_code == 404
    assert "tools not offered to the model (this server cannot run them): web_search, custom:apply_patch" \
        in dialect_server.log()


def test_codex_request_calls_a_function_when_asked(dialect_server):
    body = codex_first_request(input=[{"role": "user", "content": "CALL_TOOL please"}])
    events = sse_events(httpx.post(dialect_server.url("/v1/responses"), json=body, timeout=30))
    (call,) = events[-1]["response"]["output"]
    assert call["type"] == "function_call" and call["name"] == "exec_command" and "namespace" not in call
    assert json.loads(call["arguments"]) == {"cmd": "echo"}


def test_namespace_call_comes_back_under_the_namespace(client, dialect_server):
    response = client.responses.create(model="echo", input="CALL_TOOL", tools=[NAMESPACE, HOSTED])
    (call,) = response.output
    assert (call.type, call.name, call.namespace) == ("function_call", "lookup", "mcp__docs__")
    assert json.loads(call.arguments) == {"query": "echo"}
    # streamed: the added and done items carry it too
    with httpx.stream("POST", dialect_server.url("/v1/responses"), timeout=30,
                      json={"model": "echo", "input": "go", "stream": True, "tools": [function("other"), NAMESPACE],
                            "tool_choice": {"type": "function", "name": "lookup", "namespace": "mcp__docs__"}}) as r:
        assert r.status_code == 200 and DROPPED_HEADER not in r.headers
        events = sse_events(httpx.Response(200, content=r.read()))
    added = next(e for e in events if e["type"] == "response.output_item.added")
    done = next(e for e in events if e["type"] == "response.output_item.done")
    for item in (added["item"], done["item"]):
        assert (item["name"], item["namespace"]) == ("lookup", "mcp__docs__")
    # the call sent back (as Codex does) is the namespaced function in the model's history
    again = client.responses.create(model="echo", tools=[NAMESPACE], input=[
        {"type": "function_call", "call_id": call.call_id, "name": "lookup", "namespace": "mcp__docs__",
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "found it"}])
    assert "mcp__docs__lookup" in again.output_text and "found it" in again.output_text


def test_a_forced_hosted_tool_is_a_400_naming_it(dialect_server):
    url = dialect_server.url("/v1/responses")
    for choice, named in (({"type": "web_search_preview"}, "web_search_preview"),
                          ({"type": "custom", "name": "apply_patch"}, "custom:apply_patch")):
        body = {"model": "echo", "input": "x", "tools": [{"type": "web_search_preview"}], "tool_choice": choice}
        bad = httpx.post(url, json=body, timeout=30)
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert error["param"] == "tool_choice" and repr(named) in error["message"]
    only_hosted = httpx.post(url, json={"model": "echo", "input": "x", "tools": [HOSTED], "tool_choice": "required"})
    assert only_hosted.status_code == 400 and "web_search" in only_hosted.json()["error"]["message"]
    clash = httpx.post(url, json={"model": "echo", "input": "x",
                                  "tools": [NAMESPACE, function("mcp__docs__lookup")]})
    assert clash.status_code == 400 and "mcp__docs__lookup" in clash.json()["error"]["message"]


def test_namespace_functions_key_variant(client):
    variant = {"type": "namespace", "name": "crm", "description": "CRM",
               "functions": [{"name": "find", "parameters": PARAMS}]}
    response = client.responses.create(model="echo", input="CALL_TOOL", tools=[variant])
    (call,) = response.output
    assert (call.name, call.namespace) == ("find", "crm")


def test_allowed_tools_narrows_what_is_offered(client, dialect_server):
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "namespace", "name": "mcp__docs__"}, {"type": "web_search"}]}
    response = client.responses.create(model="echo", input="x", tools=[function("exec_command"), NAMESPACE, HOSTED],
                                       tool_choice=choice)
    (call,) = response.output
    assert (call.name, call.namespace) == ("lookup", "mcp__docs__")
    only_hosted = {**choice, "tools": [{"type": "web_search"}]}
    bad = httpx.post(dialect_server.url("/v1/responses"), timeout=30, json={
        "model": "echo", "input": "x", "tools": [function("exec_command"), HOSTED], "tool_choice": only_hosted})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tool_choice.tools"
