"""Local tests for this backend: run ``pytest`` in this directory.

They need ``localai-kernel`` installed (it ships the conformance suite and a client for the
contract). They talk to ``./run.sh`` over gRPC only: never import ``backend_pb2`` and
``localai.proto`` in one process (both define the protobuf package ``backend``).
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_SH = os.path.join(HERE, "run.sh")
CAPS = "health,load,predict,stream"  # add embeddings,tokenize,... as you implement them

try:  # the suite ships with the kernel: a missing kernel is an error, never a skip
    import localai.testing  # noqa: F401
except ImportError as exc:
    raise ImportError("pip install localai-kernel to run the conformance suite") from exc


def test_conformance():
    """LocalAI's backend conformance suite, against ./run.sh."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "localai.testing.conformance", "-q",
           "-p", "no:cacheprovider", "--backend-command", RUN_SH, "--backend-caps", CAPS]
    env = {**os.environ, "BACKEND_PYTHON": os.environ.get("BACKEND_PYTHON", sys.executable)}
    result = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def backend():
    from localai.testing.conformance import Backend

    os.environ.setdefault("BACKEND_PYTHON", sys.executable)
    proc = Backend([RUN_SH], timeout=40).start()
    yield proc
    proc.stop()


def test_generation_is_deterministic_and_honours_limits(backend):
    from localai.proto import backend_pb2 as pb

    assert backend.call("LoadModel", pb.ModelOptions(Model="no-such-file.txt")).success
    ask = dict(Prompt="tell me about the backend", Seed=42, Tokens=8)
    first = backend.call("Predict", pb.PredictOptions(**ask))
    assert first.message == backend.call("Predict", pb.PredictOptions(**ask)).message
    assert first.tokens == len(first.message.split()) <= 8
    streamed = list(backend.call("PredictStream", pb.PredictOptions(**ask)))
    assert b"".join(c.message for c in streamed) == first.message
    stop = first.message.split()[3].decode()
    cut = backend.call("Predict", pb.PredictOptions(**ask, StopPrompts=[stop]))
    assert stop.encode() not in cut.message and first.message.startswith(cut.message)
