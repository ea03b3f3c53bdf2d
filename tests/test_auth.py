"""API keys under a real ``local-ai run``: every route family needs a key, health and UI files
stay open, three header forms, constant-time comparison, and the non-loopback bind guard."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from localai import auth
from localai.testing.server import LocalAIServer
from tests.kernel_helpers import assert_error_shape, echo_env, free_port, write_model

KEYS = "key-one,key-two"

# one or more routes of every family; none of them must answer without a key
PROTECTED = [
    ("GET", "/v1/models"), ("GET", "/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"), ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/speech"),
    ("POST", "/tts"), ("POST", "/v1/images/generations"), ("POST", "/v1/rerank"),
    ("GET", "/models/available"), ("GET", "/models/galleries"), ("POST", "/models/apply"),
    ("GET", "/models/jobs"), ("POST", "/models/delete/echo"),
    ("GET", "/backends"), ("GET", "/backends/available"), ("POST", "/backends/apply"), ("GET", "/backends/jobs"),
    ("POST", "/backends/delete/echo"), ("GET", "/backends/events"),
    ("GET", "/metrics"), ("GET", "/system"), ("GET", "/version"), ("GET", "/plugins"),
    ("POST", "/backend/load"), ("POST", "/backend/shutdown"), ("POST", "/v1/tokenize"),
    ("GET", "/generated-images/x.png"), ("GET", "/no/such/route"), ("POST", "/"), ("DELETE", "/ui/chat"),
]


@pytest.fixture
def server(localai_server, echo_backend, tmp_path):
    write_model(tmp_path / "models", "echo")
    return localai_server(tmp_path / "models", env=echo_env(echo_backend, LOCALAI_API_KEY=KEYS))


def test_every_route_family_needs_a_key(server):
    for method, path in PROTECTED:
        response = httpx.request(method, server.url(path), json={"model": "echo"}, timeout=10)
        error = assert_error_shape(response, 401)
        assert error == {"message": "An authentication key is required", "type": "invalid_request_error",
                         "param": None, "code": "invalid_api_key"}, (method, path)
        assert response.headers["www-authenticate"] == "Bearer", (method, path)


def test_health_and_ui_files_stay_open(server):
    assert httpx.get(server.url("/healthz")).status_code == 200
    assert httpx.get(server.url("/readyz")).json() == {"status": "ready"}
    for path in ("/", "/ui", "/ui/chat", "/static/app.js"):
        assert httpx.get(server.url(path)).status_code != 401, path


GOOD = [{"Authorization": "Bearer key-one"}, {"Authorization": "bearer key-two"},
        {"x-api-key": "key-two"}, {"xi-api-key": "key-one"}]
WRONG = [{"Authorization": "Bearer key-three"}, {"Authorization": "Bearer key-one,key-two"},
         {"x-api-key": "key-on"}, {"xi-api-key": "KEY-ONE"}, {"Authorization": "Basic a2V5LW9uZQ=="}]


def test_header_forms_and_wrong_keys(server):
    for headers in GOOD:
        for path in ("/v1/models", "/system", "/metrics", "/backends", "/models/jobs", "/version"):
            assert httpx.get(server.url(path), headers=headers).status_code == 200, (headers, path)
        chat = httpx.post(server.url("/v1/chat/completions"), headers=headers, timeout=30,
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200, chat.text
    for headers in WRONG:
        response = httpx.get(server.url("/v1/models"), headers=headers)
        error = assert_error_shape(response, 401)
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key", headers
        assert response.headers["www-authenticate"] == "Bearer"


def test_openai_sdk(server):
    good = openai.OpenAI(base_url=server.url("/v1"), api_key="key-two", max_retries=0)
    assert "echo" in [m.id for m in good.models.list()]
    reply = good.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert "hi" in reply.choices[0].message.content
    bad = openai.OpenAI(base_url=server.url("/v1"), api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.status_code == 401


def test_keys_off_by_default(localai_server, tmp_path):
    server = localai_server(tmp_path / "models")
    assert httpx.get(server.url("/v1/models")).status_code == 200
    assert httpx.get(server.url("/metrics")).status_code == 200


def test_constant_time_compare_over_every_key(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    keys = ["first", "second", "third"]
    assert auth.key_matches("first", keys) and len(calls) == 3  # no early exit on a match
    calls.clear()
    assert not auth.key_matches("fourth", keys) and len(calls) == 3
    assert auth.presented_key({"Authorization": "Bearer  abc "}) == "abc"
    assert auth.presented_key({"x-api-key": "k"}) == "k"
    assert auth.presented_key({"xi-api-key": "k"}) == "k"
    assert auth.presented_key({}) is None


def test_loopback_detection():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert auth.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "8.8.8.8", "no-such-host.invalid"):
        assert not auth.is_loopback(host), host


def test_non_loopback_bind_without_key_refuses_to_start(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    done = subprocess.run([sys.executable, "-m", "localai", "run", "--address", f"0.0.0.0:{free_port()}",
                           "--models-path", str(models)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "LOCALAI_API_KEY": ""})
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0" in done.stderr and "LOCALAI_API_KEY" in done.stderr
    assert "--allow-insecure-bind" in done.stderr


@pytest.mark.parametrize("how", ["key", "flag", "env"])
def test_non_loopback_bind_with_key_or_override(tmp_path, how):
    port = free_port()
    (tmp_path / "models").mkdir()
    args = ["--address", f"0.0.0.0:{port}"]
    env = {"LOCALAI_API_KEY": ""}
    if how == "key":
        args += ["--api-keys", "secret"]
    elif how == "flag":
        args.append("--allow-insecure-bind")
    else:
        env["LOCALAI_ALLOW_INSECURE_BIND"] = "true"
    with LocalAIServer(tmp_path / "models", args=args, env=env, cwd=tmp_path, port=port) as server:
        status = httpx.get(server.url("/v1/models")).status_code
        assert status == (401 if how == "key" else 200)
        if how == "key":
            assert httpx.get(server.url("/v1/models"), headers={"x-api-key": "secret"}).status_code == 200
