"""The model gallery end to end: a gallery and model files served by a local HTTP server,
installs through the API and the CLI of a real server, and the failure cases."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

WEIGHTS = os.urandom(256 * 1024)
BIG = os.urandom(4 * 1024 * 1024)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gallery(file_server, tmp_path):
    """A gallery file, a base config and model files on the local file server."""
    root = Path(file_server.directory)
    (root / "weights.bin").write_bytes(WEIGHTS)
    (root / "big.bin").write_bytes(BIG)
    (root / "base.yaml").write_text(yaml.safe_dump({
        "name": "base",
        "config_file": "backend: echo\nparameters:\n  model: based/weights.bin\n  temperature: 0.1\n"
                       "known_usecases: [chat]\ncontext_size: 512\n",
        "files": [{"filename": "based/weights.bin", "uri": file_server.url("/weights.bin"), "sha256": sha(WEIGHTS)}],
    }))
    echo = {"backend": "echo", "parameters": {"model": "echo/weights.bin"}, "known_usecases": ["chat"]}
    entries = [
        {"name": "echo-model", "description": "an echo model", "tags": ["chat"], "config_file": yaml.safe_dump(echo),
         "files": [{"filename": "echo/weights.bin", "uri": file_server.url("/weights.bin"), "sha256": sha(WEIGHTS)}]},
        {"name": "shared-files", "config_file": yaml.safe_dump(echo),
         "files": [{"filename": "echo/weights.bin", "uri": file_server.url("/weights.bin"), "sha256": sha(WEIGHTS)}]},
        {"name": "with-url", "url": file_server.url("/base.yaml"), "overrides": {"context_size": 1024}},
        {"name": "bad-sha", "config_file": yaml.safe_dump(echo),
         "files": [{"filename": "bad/weights.bin", "uri": file_server.url("/weights.bin"), "sha256": "0" * 64}]},
        {"name": "escape", "config_file": yaml.safe_dump(echo),
         "files": [{"filename": "../outside.bin", "uri": file_server.url("/weights.bin")}]},
        {"name": "unreachable", "config_file": yaml.safe_dump(echo),
         "files": [{"filename": "u/weights.bin", "uri": f"http://127.0.0.1:{closed_port()}/weights.bin"}]},
        {"name": "big", "config_file": yaml.safe_dump({**echo, "parameters": {"model": "big/big.bin"}}),
         "files": [{"filename": "big/big.bin", "uri": file_server.url("/big.bin"), "sha256": sha(BIG)}]},
        {"name": "needs-piper", "config_file": "backend: piper\nparameters: {model: v.onnx}\n"},
    ]
    (root / "gallery.yaml").write_text(yaml.safe_dump(entries))
    return file_server.url("/gallery.yaml")


@pytest.fixture
def env(gallery, echo_backend, tmp_path):
    return {"LOCALAI_GALLERIES": json.dumps([{"name": "local", "url": gallery}]),
            "LOCALAI_BACKEND_GALLERIES": "[]",
            "LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}",
            "LOCALAI_BACKENDS_PATH": str(tmp_path / "backends")}


def wait_job(server, reply: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(server.url(f"/models/jobs/{reply['uuid']}")).json()
        if status["processed"]:
            return status
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def apply(server, **body) -> dict:
    response = httpx.post(server.url("/models/apply"), json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["status"].endswith(f"/models/jobs/{response.json()['uuid']}")
    return wait_job(server, response.json())


def test_install_by_name_then_chat_and_delete(localai_server, env, tmp_path):
    models = tmp_path / "models"
    server = localai_server(models, env=env)
    available = {e["name"]: e for e in httpx.get(server.url("/models/available")).json()}
    assert available["echo-model"]["installed"] is False and available["echo-model"]["gallery"] == "local"
    status = apply(server, id="local@echo-model", overrides={"parameters": {"temperature": 0.2}})
    assert status["error"] is None and status["progress"] == 100, status
    config = yaml.safe_load((models / "echo-model.yaml").read_text())
    assert config["parameters"] == {"model": "echo/weights.bin", "temperature": 0.2}
    assert (models / "echo" / "weights.bin").read_bytes() == WEIGHTS
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    assert "echo-model" in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "hi there"}])
    assert "hi there" in reply.choices[0].message.content
    assert {e["name"]: e for e in httpx.get(server.url("/models/available")).json()}["echo-model"]["installed"]
    # a second model sharing the file keeps it when the first is deleted
    assert apply(server, id="shared-files")["error"] is None
    deleted = wait_job(server, httpx.post(server.url("/models/delete/echo-model")).json())
    assert deleted["error"] is None
    assert not (models / "echo-model.yaml").exists() and (models / "echo" / "weights.bin").exists()
    assert wait_job(server, httpx.post(server.url("/models/delete/shared-files")).json())["error"] is None
    assert not (models / "echo" / "weights.bin").exists()
    assert httpx.post(server.url("/models/delete/shared-files")).status_code == 404


def test_base_config_url_and_overrides(localai_server, env, tmp_path):
    server = localai_server(tmp_path / "models", env=env)
    assert apply(server, id="with-url", name="renamed")["error"] is None
    config = yaml.safe_load((tmp_path / "models" / "renamed.yaml").read_text())
    assert config["name"] == "renamed" and config["context_size"] == 1024
    assert config["parameters"]["temperature"] == 0.1
    assert (tmp_path / "models" / "based" / "weights.bin").read_bytes() == WEIGHTS


def test_failures_leave_nothing_behind(localai_server, env, tmp_path):
    models = tmp_path / "models"
    server = localai_server(models, env=env)
    for name, text in {"bad-sha": "sha256", "escape": "outside", "unreachable": ""}.items():
        started = time.monotonic()
        status = apply(server, id=name)
        assert status["error"] and text in status["error"], (name, status["error"])
        assert time.monotonic() - started < 30
        assert not (models / f"{name}.yaml").exists()
    assert not (tmp_path / "outside.bin").exists()
    leftovers = [p for p in models.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    unknown = httpx.post(server.url("/models/apply"), json={"id": "no-such-model"})
    assert unknown.status_code == 404 and "no-such-model" in unknown.json()["error"]["message"]
    assert httpx.post(server.url("/models/apply"), json={}).status_code == 400
    missing_backend = apply(server, id="needs-piper")
    assert "pip install localai-plugin-piper" in missing_backend["error"]


def test_cut_download_resumes_from_the_partial(localai_server, env, file_server, tmp_path):
    file_server.cut_after["big.bin"] = len(BIG) // 4
    server = localai_server(tmp_path / "models", env=env)
    assert apply(server, id="big")["error"] is None
    assert (tmp_path / "models" / "big" / "big.bin").read_bytes() == BIG
    sent = file_server.bytes_sent["big.bin"]
    assert len(BIG) <= sent < len(BIG) + len(BIG) // 2, sent


def test_cli_install_list_and_run(env, tmp_path):
    models = tmp_path / "models"
    base = [sys.executable, "-m", "localai", "models"]
    environ = {**os.environ, **env}
    result = subprocess.run([*base, "install", "echo-model", "--models-path", str(models)], env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = json.loads(subprocess.run([*base, "list", "--json", "--models-path", str(models)], env=environ,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert "echo-model" in [m["name"] for m in listed["models"]]
    available = subprocess.run([*base, "list", "--available", "--models-path", str(models)], env=environ,
                               capture_output=True, text=True, timeout=60).stdout
    assert " * local@echo-model" in available and " - local@bad-sha" in available
    failed = subprocess.run([*base, "install", "bad-sha", "--models-path", str(models)], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "sha256" in failed.stderr


def test_run_installs_missing_models_first(localai_server, env, tmp_path):
    models = tmp_path / "models"
    server = localai_server(models, env=env, args=["with-url"])
    assert (models / "with-url.yaml").is_file()
    assert "with-url" in [m["id"] for m in httpx.get(server.url("/v1/models")).json()["data"]]


def test_config_url_must_be_a_regular_file(localai_server, env, tmp_path):
    server = localai_server(tmp_path / "models", env={**env, "LOCALAI_ALLOW_LOCAL_URLS": f"/dev {tmp_path}"})
    for url in ("/dev/zero", "file:///dev/zero", str(tmp_path)):
        response = httpx.post(server.url("/models/apply"), json={"url": url}, timeout=10)
        assert response.status_code == 400 and "regular file" in response.json()["error"]["message"], url
