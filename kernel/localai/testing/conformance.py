"""Conformance suite for LocalAI gRPC backends (any language: it only talks gRPC to ``run.sh``).

Run it against your backend::

    pytest --pyargs localai.testing.conformance --backend-command "./run.sh" \\
        [--backend-model FILE] [--backend-caps health,load,predict,stream,embeddings,tokenize]

The command is started as ``<command> --addr 127.0.0.1:PORT`` in its own process group (as
LocalAI does), must answer Health ``"OK"`` within ``--backend-timeout`` seconds (default 40)
and is stopped with SIGTERM at the end. Env fallbacks: ``LOCALAI_BACKEND_COMMAND``,
``LOCALAI_BACKEND_MODEL``, ``LOCALAI_BACKEND_CAPS`` (or ``BACKEND_TEST_CAPS``),
``LOCALAI_BACKEND_TIMEOUT``. A test whose capability is not listed is deselected at collection
(it is not run and not reported as skipped). ``LOCALAI_GRPC_AUTH_TOKEN``, when set, is sent as a bearer token.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import tempfile
import time

import grpc
import pytest

from localai.proto import backend_pb2 as pb
from localai.testing.backend_process import BackendProcess, BackendStartError

DEFAULT_CAPS = "health,load,predict,stream"
PROMPT = "Hello, tell me something about the model and the backend."
# RPCs expected to answer UNIMPLEMENTED unless their capability is listed: (cap, method, request)
OPTIONAL_RPCS = [
    ("rerank", "Rerank", lambda: pb.RerankRequest(query="q", documents=["a", "b"], top_n=1)),
    ("detect", "Detect", lambda: pb.DetectOptions(src="/nonexistent.png")),
    ("depth", "Depth", lambda: pb.DepthRequest()),
    ("vad", "VAD", lambda: pb.VADRequest()),
]


def _setting(config, option: str, *envs: str, default=None):
    value = config.getoption(option, default=None)
    for env in envs:
        if value in (None, ""):
            value = os.environ.get(env)
    return default if value in (None, "") else value


class Backend(BackendProcess):
    """A started backend process and a stub connected to it; its output goes to a log file."""

    def __init__(self, argv: list[str], timeout: float):
        self.timeout = timeout
        self.log = tempfile.NamedTemporaryFile(prefix="localai-conformance-", suffix=".log", delete=False)
        token = os.environ.get("LOCALAI_GRPC_AUTH_TOKEN", "")
        super().__init__(argv, output=self.log,
                         metadata=[("authorization", f"Bearer {token}")] if token else None)

    def output(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-4000:]

    def call(self, method: str, request, timeout: float = 30.0):
        """Call a unary RPC (or start a server stream) with the auth metadata, if any."""
        return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)

    def start(self) -> "Backend":
        try:
            super().start(self.timeout)
        except OSError as exc:
            pytest.fail(f"cannot start backend {self.argv}: {exc}", pytrace=False)
        except BackendStartError as exc:
            if exc.returncode is not None:
                pytest.fail(f"backend exited with code {exc.returncode} before answering Health:\n"
                            f"{self.output()}", pytrace=False)
            pytest.fail(f"backend did not answer Health 'OK' within {self.timeout}s ({exc.last}):\n"
                        f"{self.output()}", pytrace=False)
        return self


def selected_caps(config) -> set[str]:
    """The capability selection (``--backend-caps`` or its env fallbacks)."""
    value = _setting(config, "backend_caps", "LOCALAI_BACKEND_CAPS", "BACKEND_TEST_CAPS", default=DEFAULT_CAPS)
    return {c.strip().lower() for c in value.split(",") if c.strip()}


def needs(*names: str):
    """Mark a test as testing these capabilities; it is deselected unless all are selected."""
    return pytest.mark.localai_caps(*names)


def is_unselected(item, caps: set[str]) -> bool:
    """True for a test that is not part of the chosen capability selection."""
    marker = item.get_closest_marker("localai_caps")
    if marker is not None and any(name not in caps for name in marker.args):
        return True
    probe = item.get_closest_marker("localai_probe_unimplemented")
    return probe is not None and all(cap in caps for cap, _m, _r in OPTIONAL_RPCS)


@pytest.fixture(scope="module")
def caps(request) -> set[str]:
    """The capability selection (``--backend-caps``)."""
    return selected_caps(request.config)


@pytest.fixture(scope="module")
def backend(request):
    """The backend under test, started once per module and stopped at the end."""
    command = _setting(request.config, "backend_command", "LOCALAI_BACKEND_COMMAND")
    if not command:
        pytest.fail("no backend to test: pass --backend-command \"./run.sh\" "
                    "(or set LOCALAI_BACKEND_COMMAND)", pytrace=False)
    timeout = float(_setting(request.config, "backend_timeout", "LOCALAI_BACKEND_TIMEOUT", default=40))
    proc = Backend(shlex.split(command), timeout).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def load_result(request, backend, caps):
    """The LoadModel result (called once; None when 'load' is not in the caps)."""
    if "load" not in caps:
        return None
    model = _setting(request.config, "backend_model", "LOCALAI_BACKEND_MODEL", default="")
    path = os.path.abspath(model) if model and os.path.exists(model) else ""
    options = pb.ModelOptions(Model=model, ModelFile=path or model, ModelPath=os.path.dirname(path) or os.getcwd())
    return backend.call("LoadModel", options, timeout=backend.timeout)


@needs("health")
def test_health_says_ok(backend, caps):
    assert backend.call("Health", pb.HealthMessage()).message == b"OK"


@needs("load")
def test_load_model_succeeds(load_result, caps):
    assert load_result.success, f"LoadModel failed: {load_result.message!r}"


@needs("predict")
def test_predict_returns_text(backend, load_result, caps):
    reply = backend.call("Predict", pb.PredictOptions(Prompt=PROMPT, Tokens=16, Seed=1))
    assert reply.message.strip(), "Predict returned an empty message"


@needs("stream")
def test_predict_stream_yields_chunks(backend, load_result, caps):
    chunks = list(backend.call("PredictStream", pb.PredictOptions(Prompt=PROMPT, Tokens=16, Seed=1)))
    assert chunks, "PredictStream yielded no Reply"
    assert any(c.message for c in chunks), "no streamed Reply carried a message"
    assert b"".join(c.message for c in chunks).strip(), "the streamed text is empty"


@needs("predict")
def test_max_tokens_is_respected(backend, load_result, caps):
    reply = backend.call("Predict", pb.PredictOptions(Prompt=PROMPT, Tokens=3, Seed=1))
    if reply.tokens:
        assert reply.tokens <= 3, f"Tokens=3 but the backend reports {reply.tokens} tokens"
    if "stream" in caps:
        chunks = list(backend.call("PredictStream", pb.PredictOptions(Prompt=PROMPT, Tokens=3, Seed=1)))
        reported = [c.tokens for c in chunks if c.tokens]
        assert all(n <= 3 for n in reported), f"Tokens=3 but the stream reports {reported}"


@needs("embeddings")
def test_embeddings(backend, load_result, caps):
    result = backend.call("Embedding", pb.PredictOptions(Prompt="hello world"))
    values = list(result.embeddings)
    assert values, "Embedding returned no values"
    assert all(math.isfinite(v) for v in values)
    if result.tokens and result.dim:
        assert len(values) == result.tokens * result.dim


@needs("tokenize")
def test_tokenize(backend, load_result, caps):
    result = backend.call("TokenizeString", pb.PredictOptions(Prompt="hello world"))
    assert result.length > 0 and len(result.tokens) == result.length


@pytest.mark.localai_probe_unimplemented
def test_unimplemented_rpc_is_reported(backend, load_result, caps):
    _cap, method, make = next((cap, m, r) for cap, m, r in OPTIONAL_RPCS if cap not in caps)
    with pytest.raises(grpc.RpcError) as info:
        backend.call(method, make())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, (
        f"{method} is not in the caps: expected UNIMPLEMENTED, got {info.value.code()}: {info.value.details()}")


def test_still_serving_afterwards(backend, caps):
    assert backend.proc.poll() is None, f"backend exited with {backend.proc.returncode}:\n{backend.output()}"
    assert backend.call("Health", pb.HealthMessage()).message == b"OK"


def test_sigterm_stops_within_10s(backend):
    """Last test: SIGTERM (to the process group, as LocalAI sends it) ends the backend."""
    assert backend.proc.poll() is None
    started = time.monotonic()
    backend.signal_group(signal.SIGTERM)
    try:
        backend.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("backend still running 10 s after SIGTERM")
    assert time.monotonic() - started < 10
