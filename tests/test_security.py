"""The security boundary, against a real server: no request from a web page, the API or a gallery
may make the server run a program the operator did not install (see SECURITY.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest
import yaml

from localai.backends.process import free_port
from tests.kernel_helpers import wait_job

ATTACK_COMMAND = ["sh", "-c", "touch {pwned}; sleep 30"]



@pytest.fixture
def echo_env(echo_backend, tmp_path):
    return {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}", "LOCALAI_GALLERIES": "[]",
            "LOCALAI_BACKEND_GALLERIES": "[]", "HOME": str(tmp_path / "home")}


@pytest.fixture
def echo_models(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "echo.yaml").write_text(yaml.safe_dump({
        "name": "echo", "backend": "echo", "parameters": {"model": "echo"}, "known_usecases": ["chat"]}))
    return models


def chat_body(model: str = "echo") -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]})


def test_the_reported_attack_gets_4xx_and_leaves_no_file(localai_server, echo_env, echo_models, tmp_path):
    """The issue's two curl lines, byte for byte what a web page's fetch() sends."""
    pwned = tmp_path / "home" / "pwned"
    pwned.parent.mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("name: cfg\n")
    server = localai_server(echo_models, env=echo_env)
    attack = {"url": f"file://{cfg}", "name": "evil",
              "overrides": {"backend": "http", "proxy": {"command": [p.format(pwned=pwned) for p in ATTACK_COMMAND]}}}
    page = {"content-type": "text/plain", "Origin": "http://evil.example"}
    apply = httpx.post(server.url("/models/apply"), headers=page, content=json.dumps(attack), timeout=10)
    chat = httpx.post(server.url("/v1/chat/completions"), headers=page, content=chat_body("evil"), timeout=10)
    assert apply.status_code == 403 and apply.json()["error"]["code"] == "origin_not_allowed", apply.text
    assert chat.status_code == 403 and set(chat.json()["error"]) >= {"message", "type", "code"}
    assert "access-control-allow-origin" not in chat.headers
    # the same requests from a client without an Origin (curl, an SDK) are refused too, by the config rules
    apply = httpx.post(server.url("/models/apply"), headers={"content-type": "text/plain"},
                       content=json.dumps(attack), timeout=10)
    assert apply.status_code == 400 and apply.json()["error"]["code"] == "local_url_not_allowed", apply.text
    attack["url"] = None
    attack["id"] = "file://" + str(cfg)
    assert httpx.post(server.url("/models/apply"), json=attack, timeout=10).status_code == 400
    chat = httpx.post(server.url("/v1/chat/completions"), content=chat_body("evil"), timeout=10)
    assert chat.status_code == 404
    time.sleep(0.5)
    assert not pwned.exists()
    assert sorted(p.name for p in echo_models.iterdir()) == ["echo.yaml"]


def test_executable_fields_from_the_api_are_refused_by_name(localai_server, echo_env, echo_models, tmp_path):
    allowed = tmp_path / "configs"
    allowed.mkdir()
    cfg = allowed / "cfg.yaml"
    cfg.write_text("name: cfg\nbackend: echo\nparameters: {model: echo}\n")
    server = localai_server(echo_models, env=echo_env, args=["--allow-local-urls", str(allowed)])
    cases = {
        "proxy.command": {"backend": "http", "proxy": {"command": ["sh", "-c", "true"]}},
        "proxy.upstream_url": {"backend": "http", "proxy": {"upstream_url": "http://169.254.169.254/v1"}},
        "proxy.api_key_file": {"backend": "http", "proxy": {"upstream_url": "", "api_key_file": "/etc/shadow"}},
        "backend": {"backend": "x:/tmp/run.sh"},
        "parameters.model": {"parameters": {"model": "/etc/passwd"}},
        "options[0]": {"options": ["config:../../secret.json"]},
    }
    for field, overrides in cases.items():
        reply = httpx.post(server.url("/models/apply"), json={"url": f"file://{cfg}", "overrides": overrides})
        assert reply.status_code == 400, (field, reply.text)
        error = reply.json()["error"]
        assert error["param"] == field and field in error["message"] and error["code"] == "field_not_allowed"
    # the allowed directory works for plain configs; its config cannot climb out with '..'
    outside = tmp_path / "outside.yaml"
    outside.write_text("name: outside\n")
    climb = httpx.post(server.url("/models/apply"), json={"url": f"file://{allowed}/../outside.yaml"})
    assert climb.status_code == 400 and climb.json()["error"]["code"] == "local_url_not_allowed"
    job = httpx.post(server.url("/models/apply"), json={"url": f"file://{cfg}", "name": "fine"}).json()
    assert wait_job(server, job["uuid"])["error"] is None
    assert sorted(p.name for p in echo_models.glob("[!.]*.yaml")) == ["echo.yaml", "fine.yaml"]


def test_gallery_entries_cannot_set_a_command(localai_server, echo_env, echo_models, tmp_path):
    pwned = tmp_path / "home" / "pwned"
    base = tmp_path / "base.yaml"
    command = [p.format(pwned=pwned) for p in ATTACK_COMMAND]
    base.write_text(yaml.safe_dump({"name": "base", "config_file": yaml.safe_dump(
        {"backend": "http", "proxy": {"command": command}})}))
    gallery = tmp_path / "gallery.yaml"
    gallery.write_text(yaml.safe_dump([
        {"name": "in-base", "url": f"file://{base}"},
        {"name": "in-overrides", "overrides": {"backend": "http", "proxy": {"command": command}}},
        {"name": "harmless", "config_file": "backend: echo\nparameters: {model: echo}\n"},
    ]))
    env = {**echo_env, "LOCALAI_GALLERIES": json.dumps([{"name": "op", "url": f"file://{gallery}"}])}
    server = localai_server(echo_models, env=env)
    for name in ("in-base", "in-overrides"):
        reply = httpx.post(server.url("/models/apply"), json={"id": f"op@{name}"})
        assert reply.status_code == 200, reply.text
        status = wait_job(server, reply.json()["uuid"])
        assert "proxy.command" in (status["error"] or ""), status
        chat = httpx.post(server.url("/v1/chat/completions"), content=chat_body(name), timeout=10)
        assert chat.status_code == 404
    assert wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "op@harmless"}).json()["uuid"])[
        "error"] is None
    assert sorted(p.name for p in echo_models.glob("[!.]*.yaml")) == ["echo.yaml", "harmless.yaml"]
    time.sleep(0.5)
    assert not pwned.exists()


def test_cross_origin_and_foreign_host_are_refused_same_origin_works(localai_server, echo_env, echo_models):
    server = localai_server(echo_models, env=echo_env)
    port = server.port
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        reply = httpx.post(server.url("/v1/chat/completions"), headers={"Origin": origin}, content=chat_body())
        assert reply.status_code == 200, (origin, reply.text)
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        reply = httpx.post(server.url("/v1/chat/completions"), headers={"Origin": origin}, content=chat_body())
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "origin_not_allowed", origin
    cross = httpx.get(server.url("/v1/models"), headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    # a link from anywhere still opens the UI
    assert httpx.get(server.url("/ui/chat"), headers={"Origin": "http://evil.example"}).status_code == 200
    # DNS rebinding: the browser sends the attacker's name as Host
    rebound = httpx.get(server.url("/v1/models"), headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
    for host in (f"localhost:{port}", f"app.localhost:{port}", "127.0.0.1"):
        assert httpx.get(server.url("/v1/models"), headers={"Host": host}).status_code == 200, host
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices


def test_allowed_hosts_add_names(localai_server, echo_env, echo_models):
    server = localai_server(echo_models, env={**echo_env, "LOCALAI_ALLOWED_HOSTS": "ai.lan,.example.org"})
    for host, status in (("ai.lan", 200), ("x.example.org", 200), ("example.org", 200), ("evil.example", 403)):
        assert httpx.get(server.url("/v1/models"), headers={"Host": host}).status_code == status, host


def test_cors_allowed_origin_gets_preflight_and_streaming(localai_server, echo_env, echo_models):
    app = "http://app.example:3000"
    server = localai_server(echo_models, env=echo_env, args=["--cors-allow-origins", app])
    preflight = httpx.options(server.url("/v1/chat/completions"), headers={
        "Origin": app, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == app
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    body = json.dumps({"model": "echo", "stream": True, "messages": [{"role": "user", "content": "one two"}]})
    with httpx.stream("POST", server.url("/v1/chat/completions"), content=body,
                      headers={"Origin": app, "Content-Type": "application/json"}) as stream:
        assert stream.status_code == 200 and stream.headers["access-control-allow-origin"] == app
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "one" in text and text.rstrip().endswith("data: [DONE]")
    other = httpx.options(server.url("/v1/chat/completions"), headers={
        "Origin": "http://other.example", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


def test_cors_star_without_a_key_on_a_public_bind_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "localai", "run", "--address", f"0.0.0.0:{free_port()}", "--models-path",
         str(tmp_path / "models"), "--allow-insecure-bind", "--cors-allow-origins", "*"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode != 0 and "CORS" in result.stderr and "'*'" in result.stderr, result.stderr


def test_backend_uris_from_the_api_need_the_operators_flag(localai_server, echo_env, echo_models, echo_backend):
    server = localai_server(echo_models, env=echo_env)
    for body in ({"id": str(echo_backend.parent), "name": "mine"}, {"uri": "oci://127.0.0.1:1/x:1"}):
        reply = httpx.post(server.url("/backends/apply"), json=body)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "backend_uri_not_allowed", reply.text
    assert httpx.get(server.url("/backends")).json() == []
