"""Backends listen only to the kernel (SECURITY.md, rule 5), against a real server.

An attacker on the machine reads a backend's ``--addr`` from ``ps`` and calls it with gRPC: the
call is refused (UNAUTHENTICATED), health checks included, while the kernel's own calls (which carry
the per-launch secret it put in the backend's environment) keep working. Output paths (``dst``) the
kernel hands a backend are inside a directory it made for the request, and the backend helpers
refuse any other, even from a caller that holds the secret.
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import grpc
import httpx
import openai
import psutil
import pytest
import yaml

from localai.proto import backend_pb2 as pb
from localai.proto import backend_pb2_grpc
from localai.testing.backend_process import BackendProcess
from tests.test_backend_template import CORPUS, RUN_SH as TEMPLATE_RUN_SH

KEY = "sk-operator"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def models(tmp_path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name, usecases in {"echo": ["chat"], "echo-img": ["image"], "echo-tts": ["tts"]}.items():
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, "known_usecases": usecases}))
    return models


@pytest.fixture
def server(localai_server, echo_backend, models):
    return localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}",
                                       "LOCALAI_API_KEY": KEY})


def chat(server, model: str = "echo", content: str = "hello") -> httpx.Response:
    return httpx.post(server.url("/v1/chat/completions"), headers=AUTH, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def backend_from_ps(server) -> tuple[psutil.Process, str]:
    """What ``ps`` shows anyone: the backend process under the server and its ``--addr``."""
    found = [(proc, proc.cmdline()) for proc in psutil.Process(server.pid).children(recursive=True)]
    found = [(proc, argv[argv.index("--addr") + 1]) for proc, argv in found if "--addr" in argv]
    assert found, "no backend process with --addr under the server"
    return found[-1]


def call(address: str, method: str, request, token: str | None = None):
    """One direct gRPC call to a backend, as any local process could make it."""
    with grpc.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendStub(channel)
        metadata = [("authorization", f"Bearer {token}")] if token is not None else None
        reply = getattr(stub, method)(request, timeout=10, metadata=metadata)
        return list(reply) if method.endswith("Stream") else reply


def refused(address: str, method: str, request, token: str | None = None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(address, method, request, token)
    return caught.value.code()


def test_backend_port_from_ps_refuses_calls_without_the_token(server):
    assert chat(server).status_code == 200  # loads the backend
    assert httpx.get(server.url("/system"), timeout=10).status_code == 401
    proc, address = backend_from_ps(server)
    predict = pb.PredictOptions(Prompt="steal a completion", Tokens=8)
    for token in (None, "", "guessed", KEY):
        assert refused(address, "Predict", predict, token) == grpc.StatusCode.UNAUTHENTICATED
        assert refused(address, "Health", pb.HealthMessage(), token) == grpc.StatusCode.UNAUTHENTICATED
    assert refused(address, "Free", pb.HealthMessage()) == grpc.StatusCode.UNAUTHENTICATED
    assert refused(address, "PredictStream", predict) == grpc.StatusCode.UNAUTHENTICATED

    # the secret is in the backend's environment (readable by its own user only), never in argv
    token = proc.environ()["LOCALAI_GRPC_AUTH_TOKEN"]
    assert len(token) >= 32
    for other in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(other.info["cmdline"] or ())
    assert call(address, "Health", pb.HealthMessage(), token).message == b"OK"

    # the kernel's own calls still work, and a stream too
    reply = chat(server, content="still mine")
    assert reply.status_code == 200 and "still mine" in reply.json()["choices"][0]["message"]["content"]
    sdk = openai.OpenAI(base_url=server.url("/v1"), api_key=KEY, max_retries=0)
    stream = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "streamed"}], stream=True)
    assert "streamed" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_every_launch_gets_a_fresh_token(server):
    assert chat(server).status_code == 200
    first = backend_from_ps(server)[0].environ()["LOCALAI_GRPC_AUTH_TOKEN"]
    unload = httpx.post(server.url("/backend/shutdown"), headers=AUTH, json={"model": "echo"}, timeout=30)
    assert unload.status_code == 200
    assert chat(server).status_code == 200
    proc, address = backend_from_ps(server)
    second = proc.environ()["LOCALAI_GRPC_AUTH_TOKEN"]
    assert second != first
    assert refused(address, "Health", pb.HealthMessage(), first) == grpc.StatusCode.UNAUTHENTICATED


def test_output_paths_outside_the_kernels_directory_are_refused(server, tmp_path):
    """Even a caller holding the secret cannot make the backend write outside the output root."""
    assert chat(server, "echo-img").status_code in (200, 400)  # loads the image model's backend
    images = httpx.post(server.url("/v1/images/generations"), headers=AUTH, timeout=30,
                        json={"model": "echo-img", "prompt": "a cat", "size": "16x16"})
    assert images.status_code == 200
    proc, address = backend_from_ps(server)
    env = proc.environ()
    token, root = env["LOCALAI_GRPC_AUTH_TOKEN"], Path(env["LOCALAI_BACKEND_OUTPUT_DIR"])
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert list(root.iterdir()) == []  # each request's directory is gone once it is answered

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = root / "escape"
    link.symlink_to(elsewhere)
    targets = [elsewhere / "x.png", root.parent / "x.png", root / ".." / "x.png", link / "x.png", root]
    for dst in targets:
        request = pb.GenerateImageRequest(width=8, height=8, dst=str(dst))
        assert refused(address, "GenerateImage", request, token) == grpc.StatusCode.PERMISSION_DENIED
        # and without the token it is refused before the path is even looked at
        assert refused(address, "GenerateImage", request) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:
        call(address, "GenerateImage", pb.GenerateImageRequest(width=8, height=8, dst=str(elsewhere / "y.png")), token)
    assert "outside the output directory" in caught.value.details()
    assert list(elsewhere.iterdir()) == [] and not (root.parent / "x.png").exists()

    inside = root / "mine"
    inside.mkdir()
    assert call(address, "GenerateImage", pb.GenerateImageRequest(width=8, height=8, dst=str(inside / "ok.png")),
                token).success
    assert (inside / "ok.png").read_bytes()[:4] == b"\x89PNG"


def test_tts_output_outside_the_kernels_directory_is_refused(server, tmp_path):
    speech = httpx.post(server.url("/v1/audio/speech"), headers=AUTH, timeout=30,
                        json={"model": "echo-tts", "input": "hello there", "response_format": "wav"})
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    proc, address = backend_from_ps(server)
    token, root = proc.environ()["LOCALAI_GRPC_AUTH_TOKEN"], Path(proc.environ()["LOCALAI_BACKEND_OUTPUT_DIR"])
    assert list(root.iterdir()) == []
    target = tmp_path / "elsewhere.wav"
    request = pb.TTSRequest(text="overwrite", dst=str(target))
    assert refused(address, "TTS", request, token) == grpc.StatusCode.PERMISSION_DENIED
    assert refused(address, "TTS", request) == grpc.StatusCode.UNAUTHENTICATED
    assert not target.exists()


def test_the_kernels_image_routes_still_work(server):
    b64 = httpx.post(server.url("/v1/images/generations"), headers=AUTH, timeout=30,
                     json={"model": "echo-img", "prompt": "a cat", "size": "16x8", "response_format": "b64_json"})
    assert b64.status_code == 200
    assert base64.b64decode(b64.json()["data"][0]["b64_json"])[:4] == b"\x89PNG"
    url = httpx.post(server.url("/v1/images/generations"), headers=AUTH, timeout=30,
                     json={"model": "echo-img", "prompt": "a dog", "size": "16x8"}).json()["data"][0]["url"]
    fetched = httpx.get(url, headers=AUTH, timeout=10)
    assert fetched.status_code == 200 and fetched.content[:4] == b"\x89PNG"


def test_a_backend_that_does_not_check_still_works(localai_server, echo_backend, models, tmp_path):
    """LocalAI-built backends that ignore the token (and the output root) keep working."""
    legacy = tmp_path / "legacy" / "run.sh"
    legacy.parent.mkdir()
    legacy.write_text(f'#!/bin/sh\nunset LOCALAI_GRPC_AUTH_TOKEN LOCALAI_BACKEND_OUTPUT_DIR\nexec "{echo_backend}" "$@"\n')
    legacy.chmod(0o755)
    server = localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{legacy}"})
    reply = httpx.post(server.url("/v1/chat/completions"), timeout=30,
                       json={"model": "echo", "messages": [{"role": "user", "content": "old"}]})
    assert reply.status_code == 200 and "old" in reply.json()["choices"][0]["message"]["content"]
    speech = httpx.post(server.url("/v1/audio/speech"), json={"model": "echo-tts", "input": "hi", "response_format": "wav"},
                        timeout=30)
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    # and it is as open as it always was: the documented gap for such backends, which the log names
    _, address = backend_from_ps(server)
    assert call(address, "Health", pb.HealthMessage()).message == b"OK"
    assert "answers calls without the kernel's token" in server.log()


def test_the_backend_template_refuses_calls_without_the_token(localai_server, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "corpus.txt").write_text(CORPUS)
    (models / "markov.yaml").write_text(yaml.safe_dump({
        "name": "markov", "backend": "template", "parameters": {"model": "corpus.txt"},
        "template": {"use_tokenizer_template": True}, "known_usecases": ["chat"]}))
    server = localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"template:{TEMPLATE_RUN_SH}",
                                         "BACKEND_PYTHON": sys.executable, "LOCALAI_API_KEY": KEY})
    reply = chat(server, "markov", "tell me about the dog")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    _, address = backend_from_ps(server)
    assert refused(address, "Predict", pb.PredictOptions(Prompt="dog", Tokens=4)) == grpc.StatusCode.UNAUTHENTICATED
    assert refused(address, "Health", pb.HealthMessage()) == grpc.StatusCode.UNAUTHENTICATED
    assert chat(server, "markov", "the dog").status_code == 200
    assert os.environ.get("LOCALAI_GRPC_AUTH_TOKEN") is None  # the test itself holds no token


def test_a_backend_the_operator_runs_gets_the_operators_token(localai_server, echo_backend, models):
    """A backend already running at an address is sent the server's ``LOCALAI_GRPC_AUTH_TOKEN``
    (read by Settings, handed to the model manager); a server without it is refused too."""
    token = "grpc-operator-secret"
    backend = BackendProcess([str(echo_backend)], env={**os.environ, "LOCALAI_GRPC_AUTH_TOKEN": token},
                             metadata=[("authorization", f"Bearer {token}")])
    backend.start(timeout=30)
    try:
        assert refused(backend.address, "Health", pb.HealthMessage()) == grpc.StatusCode.UNAUTHENTICATED
        remote = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{backend.address}", "LOCALAI_API_KEY": KEY,
                  "LOCALAI_BACKEND_HEALTH_TIMEOUT": "3s"}
        server = localai_server(models, env={**remote, "LOCALAI_GRPC_AUTH_TOKEN": token})
        reply = chat(server, content="hello remote")
        assert reply.status_code == 200 and "hello remote" in reply.json()["choices"][0]["message"]["content"]
        without = localai_server(models, env=remote)
        assert chat(without).status_code >= 500
    finally:
        backend.stop()
