"""HTTP backends: models served by another OpenAI-compatible server (here a second
``local-ai run`` with the echo backend), unmanaged and managed by the kernel."""

from __future__ import annotations

import json
import sys
import time

import httpx
import openai
import psutil
import pytest
import yaml

from localai.testing.server import LocalAIServer, echo_backend_script


def echo_models(path, script):
    path.mkdir(parents=True, exist_ok=True)
    (path / "echo.yaml").write_text(yaml.safe_dump({
        "name": "echo", "backend": "echo", "parameters": {"model": "echo"},
        "known_usecases": ["chat", "completion", "embeddings"], "options": ["dim:8"]}))
    return {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{script}"}


@pytest.fixture
def upstream(tmp_path):
    script = echo_backend_script(tmp_path / "echo")
    env = echo_models(tmp_path / "upstream-models", script)
    server = LocalAIServer(tmp_path / "upstream-models", env=env).start()
    yield server
    server.stop()


def front(tmp_path, proxy: dict) -> LocalAIServer:
    models = tmp_path / "front-models"
    models.mkdir(exist_ok=True)
    (models / "remote.yaml").write_text(yaml.safe_dump({
        "name": "remote", "backend": "http", "proxy": proxy, "known_usecases": ["chat", "completion", "embeddings"]}))
    return LocalAIServer(models).start()


def test_forwarding_chat_stream_embeddings_and_errors(upstream, tmp_path):
    server = front(tmp_path, {"upstream_url": upstream.base_url + "/v1", "upstream_model": "echo"})
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
        assert "remote" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "hello world"}])
        assert "hello world" in reply.choices[0].message.content and reply.model == "remote"
        assert reply.usage.total_tokens > 0
        chunks = list(client.chat.completions.create(model="remote", stream=True,
                                                     messages=[{"role": "user", "content": "one two three"}]))
        assert len(chunks) > 3 and all(c.model == "remote" for c in chunks)
        assert "one two three" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        text = client.completions.create(model="remote", prompt="a b c", max_tokens=2)
        assert text.choices[0].finish_reason == "length"
        vectors = client.embeddings.create(model="remote", input=["x", "y"])
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8
        # the upstream's own errors come back in the OpenAI shape
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="remote", messages=[])
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "ERROR_NOW"}])
        assert "requested error" in info.value.body["message"]
        # the upstream goes away: a clear 502, then it comes back on the same port and heals
        port = upstream.port
        upstream.stop()
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 502 and "unreachable" in info.value.body["message"]
        again = LocalAIServer(upstream.models_path, env=upstream.env, port=port).start()
        try:
            healed = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "back"}])
            assert "back" in healed.choices[0].message.content
        finally:
            again.stop()
    finally:
        server.stop()


def test_managed_upstream_is_started_and_stopped(tmp_path):
    script = echo_backend_script(tmp_path / "echo")
    env = echo_models(tmp_path / "upstream-models", script)
    command = [sys.executable, "-m", "localai", "run", "--address", "127.0.0.1:{port}",
               "--models-path", str(tmp_path / "upstream-models"),
               "--external-grpc-backends", env["LOCALAI_EXTERNAL_GRPC_BACKENDS"]]
    server = front(tmp_path, {"command": command, "ready_url": "http://127.0.0.1:{port}/readyz",
                              "upstream_model": "echo"})
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "managed"}])
        assert "managed" in reply.choices[0].message.content
        loaded = httpx.get(server.url("/system")).json()["loaded_models"]
        pid = loaded[0]["pid"]
        assert psutil.pid_exists(pid)
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the managed upstream outlived the kernel"
        time.sleep(0.1)


def test_config_without_upstream_is_a_clear_error(tmp_path):
    server = front(tmp_path, {})
    try:
        response = httpx.post(server.url("/v1/chat/completions"),
                              json={"model": "remote", "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 400
        assert "upstream_url" in json.dumps(response.json())
    finally:
        server.stop()
