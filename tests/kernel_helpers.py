"""Small helpers shared by the kernel tests (model YAML, env, process checks, polling)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import yaml

ECHO_USECASES = ["chat", "completion", "embeddings"]


def write_model(models: Path, name: str, *, backend: str = "echo", model: str = "echo-model",
                options: list[str] | tuple = (), **extra) -> Path:
    """Write ``<models>/<name>.yaml`` for an echo-style model and return its path."""
    models.mkdir(parents=True, exist_ok=True)
    config = {"name": name, "backend": backend, "parameters": {"model": model},
              "known_usecases": ECHO_USECASES, "options": list(options), **extra}
    path = models / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def echo_env(run_sh: Path | str, name: str = "echo", **extra: str) -> dict[str, str]:
    """Env registering a managed echo backend under ``name``."""
    return {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"{name}:{run_sh}", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int | None) -> bool:
    """True while ``pid`` is a running (non-zombie) process."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.05):
    """Poll ``predicate`` until it is truthy; return its value or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def system(server) -> dict:
    return httpx.get(server.url("/system"), timeout=10).json()


def loaded_pids(server) -> dict[str, int]:
    """Model name → backend pid of every loaded model, from ``/system``."""
    return {m["id"]: m["pid"] for m in system(server)["loaded_models"]}


def chat(server, model: str, text: str, **extra) -> httpx.Response:
    """A raw non-streaming chat request."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(server.url("/v1/chat/completions"), json=body, timeout=30)


def assert_error_shape(response: httpx.Response, status: int | tuple[int, ...]) -> dict:
    """The response is an OpenAI-shaped error with ``status``; return its ``error`` object."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.headers, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), (response.headers,
                                                                                       response.text)
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert {"message", "type", "code"} <= set(error)
    return error


def start_echo_process(port: int, **env: str) -> subprocess.Popen:
    """An echo backend we start ourselves (an unmanaged ``name:host:port`` backend)."""
    return subprocess.Popen([sys.executable, "-m", "localai.testing.echo_backend", "--addr", f"127.0.0.1:{port}"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_job(server, job_id: str, route: str = "models", timeout: float = 30) -> dict:
    """Poll ``/<route>/jobs/<id>`` until the gallery job is processed; return its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(server.url(f"/{route}/jobs/{job_id}"), timeout=10).json()
        if status["processed"]:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
