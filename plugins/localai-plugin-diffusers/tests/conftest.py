"""Fixtures: the tiny random-weight pipeline (session) and real backend processes (module)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from localai.proto import backend_pb2
from localai.testing.backend_process import running_backend

ARGV = [sys.executable, "-m", "localai_plugin_diffusers"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny StableDiffusionPipeline saved with ``save_pretrained`` (built in a subprocess: no torch here)."""
    out = tmp_path_factory.mktemp("models") / "tiny-sd"
    subprocess.run([sys.executable, "-m", "localai_plugin_diffusers.tiny", str(out)], check=True,
                   capture_output=True, timeout=240)
    assert (out / "model_index.json").is_file()
    return out


@pytest.fixture(scope="module")
def backend():
    """A backend process with no model loaded at first."""
    with running_backend(ARGV) as stub:
        yield stub


@pytest.fixture(scope="module")
def loaded(tiny_model):
    """A backend process with the tiny pipeline loaded (4 steps by default)."""
    options = backend_pb2.ModelOptions(Model="tiny-sd", ModelFile=str(tiny_model), Options=["steps:4"])
    with running_backend(ARGV, load=options, load_timeout=120) as stub:
        yield stub
