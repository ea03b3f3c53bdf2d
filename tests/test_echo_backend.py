"""The echo test backend over real gRPC: RPC behaviour, crash triggers, SIGTERM and the parent watch."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from localai.backends.process import free_port
from localai.proto import backend_pb2 as pb
from localai.testing.backend_process import BackendProcess, running_backend

KERNEL = str(Path(__file__).resolve().parents[1] / "kernel")
ECHO = [sys.executable, "-m", "localai.testing.echo_backend"]


def backend_env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (KERNEL, env.get("PYTHONPATH")) if p)
    return env


def start_backend(metadata=None, **env) -> BackendProcess:
    """Start the echo backend; return it once Health answers."""
    backend = BackendProcess(ECHO, env=backend_env(**env), metadata=metadata)
    backend.start(timeout=10)
    return backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """One loaded echo backend shared by the read-only tests: (stub, load_log path)."""
    log = tmp_path_factory.mktemp("echo") / "loads.log"
    with running_backend(ECHO, env=backend_env(), timeout=10) as stub:
        res = stub.LoadModel(pb.ModelOptions(Model="echo-model", ModelFile="/models/echo.bin",
                                             Options=[f"load_log:{log}", "dim:16"]))
        assert res.success and res.message == "loaded"
        yield stub, log


def test_load_model(backend, tmp_path):
    stub, log = backend
    (line,) = log.read_text().splitlines()
    pid, model = line.split()
    assert pid.isdigit() and model == "echo-model"
    res = stub.LoadModel(pb.ModelOptions(Model="x-fail-load", Options=["dim:16"]))
    assert not res.success and "refusing to load" in res.message
    status = stub.Status(pb.HealthMessage())
    assert status.state == pb.StatusResponse.READY and status.memory.total > 0


def test_predict(backend):
    stub, _ = backend
    r = stub.Predict(pb.PredictOptions(Prompt="hello big world"))
    assert (r.message, r.tokens, r.prompt_tokens) == (b"echo: hello big world", 4, 3)
    r = stub.Predict(pb.PredictOptions(Prompt="hello big world", Tokens=2))
    assert (r.message, r.tokens) == (b"echo: hello", 2)
    r = stub.Predict(pb.PredictOptions(Prompt="hello big world", StopPrompts=["big"]))
    assert r.message == b"echo: hello"
    chat = [pb.Message(role="system", content="be nice"), pb.Message(role="user", content="hi there")]
    r = stub.Predict(pb.PredictOptions(UseTokenizerTemplate=True, Messages=chat))
    assert (r.message, r.prompt_tokens) == (b"echo: hi there", 6)


def test_predict_stream(backend):
    stub, _ = backend
    replies = list(stub.PredictStream(pb.PredictOptions(Prompt="one two three")))
    assert [r.message for r in replies] == [b"echo: ", b"one ", b"two ", b"three", b""]
    assert (replies[-1].tokens, replies[-1].prompt_tokens) == (4, 3)


def test_errors_and_identity(backend):
    stub, _ = backend
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(pb.PredictOptions(Prompt="ERROR_NOW"))
    assert e.value.code() == grpc.StatusCode.INTERNAL
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(pb.PredictOptions(Prompt="hi", ModelIdentity="other-model"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "model identity mismatch" in e.value.details()
    assert stub.Predict(pb.PredictOptions(Prompt="hi", ModelIdentity="echo-model")).message == b"echo: hi"


def test_embedding_and_tokenize(backend):
    stub, _ = backend
    a = stub.Embedding(pb.PredictOptions(Prompt="some text"))
    b = stub.Embedding(pb.PredictOptions(Prompt="some text"))
    c = stub.Embedding(pb.PredictOptions(Prompt="other text"))
    assert a.dim == 16 and len(a.embeddings) == 16 and a.layout == pb.EMBEDDING_LAYOUT_FINAL
    assert list(a.embeddings) == list(b.embeddings) != list(c.embeddings)
    assert math.isclose(sum(v * v for v in a.embeddings), 1.0, rel_tol=1e-5)
    t = stub.TokenizeString(pb.PredictOptions(Prompt="a b a"))
    assert t.length == 3 and t.tokens[0] == t.tokens[2] != t.tokens[1]


def test_crash_midstream():
    backend = start_backend()
    try:
        stub, proc = backend.stub, backend.proc
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for r in stub.PredictStream(pb.PredictOptions(Prompt="CRASH_MIDSTREAM now please"), timeout=5):
                got.append(r.message)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED)
        assert len(got) <= 2
        assert proc.wait(5) == 3
    finally:
        backend.stop()


def test_sigterm_exits_zero():
    backend = start_backend()
    try:
        backend.channel.close()
        backend.proc.send_signal(signal.SIGTERM)
        assert backend.proc.wait(5) == 0
    finally:
        backend.stop()


def test_auth_token():
    backend = start_backend([("authorization", "Bearer s3cret")], LOCALAI_GRPC_AUTH_TOKEN="s3cret")
    try:
        stub = backend.stub
        for md in (None, [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as e:
                stub.Health(pb.HealthMessage(), metadata=md)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            list(stub.PredictStream(pb.PredictOptions(Prompt="x")))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        backend.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_parent_watch():
    addr = f"127.0.0.1:{free_port()}"
    launcher = textwrap.dedent(f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-m", "localai.testing.echo_backend", "--addr", {addr!r}],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        p.stderr.readline()  # "... listening on ...": the watch has recorded its parent
        print(p.pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=15,
                         env=backend_env(LOCALAI_BACKEND_PARENT_WATCH_INTERVAL="0.2"))
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("backend outlived its parent")
