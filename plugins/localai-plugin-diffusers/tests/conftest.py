"""Fixtures: the tiny random-weight pipeline (session) and real backend processes (module)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time

import grpc
import pytest

from localai.proto import backend_pb2, backend_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny StableDiffusionPipeline saved with ``save_pretrained`` (built in a subprocess: no torch here)."""
    out = tmp_path_factory.mktemp("models") / "tiny-sd"
    subprocess.run([sys.executable, "-m", "localai_plugin_diffusers.tiny", str(out)], check=True,
                   capture_output=True, timeout=240)
    assert (out / "model_index.json").is_file()
    return out


@contextlib.contextmanager
def serve_backend():
    """Start ``python -m localai_plugin_diffusers`` and yield a stub once Health answers."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_diffusers", "--addr", addr])
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
    """A backend process with no model loaded at first."""
    with serve_backend() as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(tiny_model):
    """A backend process with the tiny pipeline loaded (4 steps by default)."""
    with serve_backend() as stub:
        res = stub.LoadModel(
            backend_pb2.ModelOptions(Model="tiny-sd", ModelFile=str(tiny_model), Options=["steps:4"]),
            timeout=120,
        )
        assert res.success, res.message
        yield stub
