"""What Claude Code 2.1.x sends to ``/v1/messages?beta=true``, on a real server (echo backend with
tool calls), through the ``anthropic`` SDK's beta client and raw HTTP; model aliases and the
server-wide fallback model (``--model-fallback`` / ``LOCALAI_MODEL_FALLBACK``) in every dialect."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from localai.testing.server import LocalAIServer
from tests.dialects.claude_code_request import first_request
from tests.dialects.helpers import CAPS, tool_backend_env
from tests.kernel_helpers import write_model

BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
         "effort-2025-11-24"]


@pytest.fixture(scope="module")
def client(dialect_server):
    return anthropic.Anthropic(base_url=dialect_server.base_url, api_key="not-needed", max_retries=0, timeout=30)


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        head, data = block.split("\n", 1)
        events.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_claude_code_first_request_streams(dialect_server):
    body = first_request("echo")
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": ",".join(BETAS), "x-api-key": "x",
               "user-agent": "claude-cli/2.1.0 (external, cli)"}
    with httpx.stream("POST", dialect_server.url("/v1/messages?beta=true"), json=body, headers=headers,
                      timeout=30) as response:
        text = response.read().decode()
    assert response.status_code == 200, text
    events = sse_events(text)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    reply = "".join(d["delta"]["text"] for kind, d in events if kind == "content_block_delta")
    # the system-role message is appended to the system prompt, after the top-level system text
    assert reply.startswith("echo: system: You are Claude Code, Anthropic's official CLI for Claude.")
    assert reply.index("You are an interactive CLI tool.") < reply.index("<env>Working directory: /tmp/project")
    assert reply.index("<env>") < reply.index("user:")
    assert "list the files" in reply


def test_claude_code_request_through_the_sdk_beta_client(client):
    body = first_request("echo", stream=False)
    body.pop("stream")
    body["messages"][0]["content"][1]["text"] = "CALL_TOOL please"
    body["tool_choice"] = {"type": "tool", "name": "Read"}
    with client.beta.messages.stream(betas=BETAS, **body) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [call] = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "Read" and call.input["file_path"] == "echo"


@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 2048}, {"type": "disabled"},
                                      {"type": "adaptive"}, {"type": "adaptive", "display": "omitted"},
                                      {"type": "between_tools"}])
def test_thinking_forms_are_accepted(client, thinking):
    message = client.beta.messages.create(model="echo", max_tokens=32000, thinking=thinking, betas=BETAS,
                                          output_config={"effort": "low"},
                                          messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "echo: user: hi assistant:"


def test_system_messages_fold_in_order(client):
    message = client.beta.messages.create(model="echo", max_tokens=64, system="S0", messages=[
        {"role": "system", "content": "S1"}, {"role": "user", "content": "u1"},
        {"role": "system", "content": [{"type": "text", "text": "S2"}]},
        {"role": "system", "content": "dropped", "clear_at": "next_user_message"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"},
        {"role": "system", "content": "S3", "clear_at": "next_user_message"}])
    assert message.content[0].text == "echo: system: S0 S1 S2 S3 user: u1 assistant: a1 user: u2 assistant:"


def test_bad_roles_and_system_blocks_are_400s(dialect_server):
    def post(messages):
        return httpx.post(dialect_server.url("/v1/messages?beta=true"), timeout=10,
                          json={"model": "echo", "max_tokens": 8, "messages": messages})

    bad = post([{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])
    assert bad.status_code == 400 and bad.json()["error"] == {
        "type": "invalid_request_error", "message": "messages.1.role: must be 'user', 'assistant' or 'system'"}
    blocks = post([{"role": "user", "content": "x"},
                   {"role": "system", "content": [{"type": "tool_addition", "tool": {"name": "Read"}}]}])
    assert blocks.status_code == 400
    assert "messages.1.content: blocks of type 'tool_addition'" in blocks.json()["error"]["message"]
    thinking = httpx.post(dialect_server.url("/v1/messages"), timeout=10, json={
        "model": "echo", "max_tokens": 8, "thinking": "yes", "messages": [{"role": "user", "content": "x"}]})
    assert thinking.status_code == 400 and thinking.json()["error"]["message"].startswith("thinking:")


# -- model names: aliases and the fallback ---------------------------------------------------


def start(tmp_path, *, env=None, args=()) -> LocalAIServer:
    models = tmp_path / "models"
    write_model(models, "echo", capabilities=CAPS, aliases=["claude-sonnet-4-5", "gpt-4o", "echo"])
    write_model(models, "other", capabilities=CAPS, aliases=["echo", "gpt-4o", "other-name"])
    env = tool_backend_env(tmp_path, **(env or {}))
    return LocalAIServer(models, env=env, args=list(args), cwd=tmp_path).start()


def chat(srv: LocalAIServer, model: str) -> httpx.Response:
    return httpx.post(srv.url("/v1/chat/completions"), timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def messages(srv: LocalAIServer, model: str) -> httpx.Response:
    return httpx.post(srv.url("/v1/messages"), timeout=30,
                      json={"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})


def test_aliases_answer_and_fallback_is_off_by_default(tmp_path):
    srv = start(tmp_path)
    try:
        assert [m["id"] for m in httpx.get(srv.url("/v1/models"), timeout=10).json()["data"]] == ["echo", "other"]
        reply = messages(srv, "claude-sonnet-4-5")
        assert reply.status_code == 200 and reply.json()["model"] == "claude-sonnet-4-5"
        assert chat(srv, "gpt-4o").status_code == 200  # echo's alias; other's "gpt-4o" is ignored
        assert chat(srv, "other-name").status_code == 200
        ollama = httpx.post(srv.url("/api/chat"), timeout=30, json={
            "model": "claude-sonnet-4-5", "stream": False, "messages": [{"role": "user", "content": "hi"}]})
        assert ollama.status_code == 200 and ollama.json()["message"]["content"].startswith("echo:")
        # both models loaded once: the alias names the same backend as the name
        assert chat(srv, "echo").status_code == 200
        loaded = httpx.get(srv.url("/api/ps"), timeout=10).json()["models"]
        assert sorted(m["name"] for m in loaded) == ["echo:latest", "other:latest"]
        # unknown names stay a 404 in each dialect's shape
        unknown = messages(srv, "claude-haiku-4-5-20251001")
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
        assert chat(srv, "claude-haiku-4-5").status_code == 404
        log = srv.log()
        assert "alias 'echo' ignored, it already names model 'echo'" in log
        assert "alias 'gpt-4o' ignored, it already names model 'echo'" in log
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_fallback_answers_unknown_names(tmp_path, how):
    if how == "env":
        srv = start(tmp_path, env={"LOCALAI_MODEL_FALLBACK": "other"})
    else:
        srv = start(tmp_path, args=["--model-fallback", "other"])
    try:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="x", max_retries=0, timeout=30)
        for _ in range(2):
            reply = client.messages.create(model="claude-haiku-4-5-20251001", max_tokens=16,
                                           messages=[{"role": "user", "content": "hi"}])
            assert reply.model == "claude-haiku-4-5-20251001" and reply.content[0].text.startswith("echo:")
        assert chat(srv, "gpt-5-codex").status_code == 200
        assert chat(srv, "claude-sonnet-4-5").status_code == 200  # an alias still names its own model
        embeddings = httpx.post(srv.url("/v1/embeddings"), timeout=30, json={"model": "text-embedding-3", "input": "x"})
        assert embeddings.status_code == 200
        loaded = httpx.get(srv.url("/api/ps"), timeout=10).json()["models"]
        assert sorted(m["name"] for m in loaded) == ["echo:latest", "other:latest"]
        assert [m["id"] for m in httpx.get(srv.url("/v1/models"), timeout=10).json()["data"]] == ["echo", "other"]
        log = srv.log()
        assert log.count("unknown model 'claude-haiku-4-5-20251001' answered by the fallback model 'other'") == 1
        assert "unknown model 'gpt-5-codex' answered by the fallback model 'other'" in log
    finally:
        srv.stop()
