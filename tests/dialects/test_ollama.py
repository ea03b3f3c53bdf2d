"""Ollama's API on a real ``local-ai run`` (echo backend), driven by the official ``ollama`` client,
unchanged."""

from __future__ import annotations

import hashlib
import json
import math
import time

import httpx
import ollama
import pytest
import yaml

from tests.dialects.helpers import dialect_models, tool_backend_script
from tests.kernel_helpers import wait_until

ECHO = "echo: user: hello world assistant:"


@pytest.fixture(scope="module")
def server(dialect_server):
    return dialect_server


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=30)


def test_version_and_list(client, server):
    assert httpx.get(server.url("/api/version")).json()["version"].count(".") == 2
    listed = {m.model: m for m in client.list().models}
    assert {"echo:latest", "echo-slow:latest"} <= set(listed)
    assert listed["echo:latest"].details.family == "echo" and listed["echo:latest"].modified_at is not None
    assert httpx.head(server.url("/api/tags")).status_code == 200


def test_show(client):
    shown = client.show("echo:latest")
    assert "completion" in shown.capabilities and shown.details.family == "echo"
    assert shown.modelfile.startswith("FROM ")
    with pytest.raises(ollama.ResponseError) as info:
        client.show("nope")
    assert info.value.status_code == 404 and "nope" in info.value.error


def test_chat_not_streamed(client):
    reply = client.chat(model="echo:latest", messages=[{"role": "user", "content": "hello world"}], stream=False)
    assert reply.message.role == "assistant" and reply.message.content == ECHO
    assert reply.done and reply.done_reason == "stop" and reply.model == "echo:latest"
    assert reply.prompt_eval_count == 4 and reply.eval_count == 5
    assert reply.total_duration >= reply.eval_duration >= 0 and reply.load_duration >= 0


def test_chat_streamed_by_default(client, server):
    parts = list(client.chat(model="echo-slow", messages=[{"role": "user", "content": "hello world"}], stream=True))
    assert [p.done for p in parts] == [False] * 5 + [True]
    assert "".join(p.message.content for p in parts) == ECHO
    assert parts[-1].eval_count == 5 and parts[-1].done_reason == "stop"
    with httpx.stream("POST", server.url("/api/chat"), timeout=30,
                      json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])


def test_options(client):
    reply = client.chat(model="echo", messages=[{"role": "user", "content": "a b c d"}],
                        options={"num_predict": 2, "temperature": 0.1, "seed": 3, "num_ctx": 2048})
    assert reply.message.content == "echo: user:" and reply.done_reason == "length"
    stopped = client.chat(model="echo", messages=[{"role": "user", "content": "a b c d"}], options={"stop": ["c d"]})
    assert stopped.message.content == "echo: user: a b"


def test_generate(client):
    reply = client.generate(model="echo", prompt="hello world", system="S")
    assert reply.response == "echo: system: S user: hello world assistant:" and reply.done
    streamed = list(client.generate(model="echo", prompt="hello world", stream=True))
    assert "".join(p.response for p in streamed) == ECHO and streamed[-1].done


def test_keep_alive_zero_unloads(client):
    client.chat(model="echo-slow", messages=[{"role": "user", "content": "hi"}], keep_alive=0)
    wait_until(lambda: "echo-slow:latest" not in [m.model for m in client.ps().models], timeout=10)
    client.generate(model="echo-slow", prompt="", keep_alive="10m")  # an empty request loads it
    (loaded,) = [m for m in client.ps().models if m.model == "echo-slow:latest"]
    assert loaded.expires_at.timestamp() > time.time() + 500
    unloaded = client.generate(model="echo-slow", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "echo-slow:latest" not in [m.model for m in client.ps().models]


def test_embed(client):
    result = client.embed(model="echo", input=["one", "two"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 8
    assert math.isclose(sum(x * x for x in result.embeddings[0]), 1.0, rel_tol=1e-5)
    assert result.embeddings[0] != result.embeddings[1]
    single = client.embed(model="echo", input="one")
    assert single.embeddings == result.embeddings[:1]
    old = client.embeddings(model="echo", prompt="one")
    assert len(old.embedding) == 8


def test_unknown_model_error_shape(server):
    response = httpx.post(server.url("/api/chat"), json={"model": "nope", "messages": []})
    assert response.status_code == 404 and set(response.json()) == {"error"}


WEIGHTS = b"weights " * 40000


@pytest.fixture
def gallery(file_server):
    root = file_server.directory
    (root / "weights.bin").write_bytes(WEIGHTS)
    config = {"backend": "echo", "parameters": {"model": "pulled/weights.bin"}, "known_usecases": ["chat"]}
    entries = [{"name": "pulled-model", "config_file": yaml.safe_dump(config),
                "files": [{"filename": "pulled/weights.bin", "uri": file_server.url("/weights.bin"),
                           "sha256": hashlib.sha256(WEIGHTS).hexdigest()}]}]
    (root / "gallery.yaml").write_text(yaml.safe_dump(entries))
    return file_server.url("/gallery.yaml")


def test_pull_with_progress_then_chat_and_delete(localai_server, gallery, tmp_path):
    dialect_models(tmp_path / "models")
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{tool_backend_script(tmp_path / 'backend')}",
           "LOCALAI_GALLERIES": json.dumps([{"name": "local", "url": gallery}]), "LOCALAI_BACKEND_GALLERIES": "[]"}
    server = localai_server(tmp_path / "models", env=env)
    client = ollama.Client(host=server.base_url, timeout=60)
    steps = list(client.pull("pulled-model:latest", stream=True))
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    progress = [s for s in steps if s.total]
    assert progress and progress[-1].total >= len(WEIGHTS) and all(s.digest.startswith("sha256:") for s in progress)
    assert (tmp_path / "models" / "pulled" / "weights.bin").read_bytes() == WEIGHTS
    assert "pulled-model:latest" in [m.model for m in client.list().models]
    assert client.chat(model="pulled-model", messages=[{"role": "user", "content": "hi"}]).message.content
    assert client.pull("pulled-model", stream=False).status == "success"  # again: already there
    with pytest.raises(ollama.ResponseError):
        client.pull("no-such-model")
    (tmp_path / "local.gguf").write_bytes(b"GGUF")
    with pytest.raises(ollama.ResponseError) as refused:  # local files only under --allow-local-urls
        client.pull(f"file://{tmp_path / 'local.gguf'}")
    assert refused.value.status_code in (400, 403)
    assert client.delete("pulled-model:latest").status == "success"
    assert "pulled-model:latest" not in [m.model for m in client.list().models]
    assert not (tmp_path / "models" / "pulled" / "weights.bin").exists()
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("nope")
    assert info.value.status_code == 404


@pytest.mark.openai_wire_unchecked  # its /v1/models is Ollama's 404, not an OpenAI route
def test_second_listener_on_ollamas_address(tmp_path):
    from localai.testing.server import LocalAIServer
    from tests.kernel_helpers import free_port

    dialect_models(tmp_path / "models")
    port = free_port()
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{tool_backend_script(tmp_path / 'backend')}"}
    with LocalAIServer(tmp_path / "models", args=["--ollama-address", f"127.0.0.1:{port}"], env=env, cwd=tmp_path):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/").text == "Ollama is running"
        client = ollama.Client(host=base, timeout=30)
        assert "echo:latest" in [m.model for m in client.list().models]
        assert client.chat(model="echo", messages=[{"role": "user", "content": "hello world"}]).message.content == ECHO
        assert httpx.get(base + "/v1/models").status_code == 404  # only Ollama's routes there


def test_images_need_a_model_that_can_see(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="echo", messages=[{"role": "user", "content": "What is this?", "images": [b"\x89PNG\r\n"]}])
    assert info.value.status_code == 400 and "images" in info.value.error
