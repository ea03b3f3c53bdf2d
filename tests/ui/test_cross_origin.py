"""A real web page on another origin, in Chromium, against a real server: the attack the
security issue reported is refused, and an origin the operator listed works with CORS."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml


class Page(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"<!doctype html><title>some site</title><p>hello"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_site():
    """A site on another origin (another port of 127.0.0.1) that the browser opens."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo_models(tmp_path, echo_backend):
    models = tmp_path / "models"
    models.mkdir()
    (models / "echo.yaml").write_text(yaml.safe_dump({
        "name": "echo", "backend": "echo", "parameters": {"model": "echo"}, "known_usecases": ["chat"]}))
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}", "LOCALAI_GALLERIES": "[]",
           "LOCALAI_BACKEND_GALLERIES": "[]", "LOCALAI_LOAD_PLUGINS": "none", "HOME": str(tmp_path / "home")}
    return models, env


ATTACK = """async ([base, apply, chat]) => {
  const simple = {method: "POST", mode: "no-cors", headers: {"content-type": "text/plain"}};
  await fetch(base + "/models/apply", {...simple, body: apply});
  await fetch(base + "/v1/chat/completions", {...simple, body: chat});
  return "sent";
}"""

CORS_STREAM = """async ([base]) => {
  const reply = await fetch(base + "/v1/chat/completions", {method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer not-needed"},
    body: JSON.stringify({model: "echo", stream: true, messages: [{role: "user", content: "one two three"}]})});
  return [reply.status, await reply.text()];
}"""


def test_a_foreign_page_cannot_install_a_command(open_page, other_site, localai_server, echo_models, tmp_path):
    models, env = echo_models
    pwned = tmp_path / "home" / "pwned"
    pwned.parent.mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("name: cfg\n")
    server = localai_server(models, env=env)
    apply = json.dumps({"url": f"file://{cfg}", "name": "evil", "overrides": {
        "backend": "http", "proxy": {"command": ["sh", "-c", f"touch {pwned}; sleep 30"]}}})
    chat = json.dumps({"model": "evil", "messages": [{"role": "user", "content": "x"}]})
    page = open_page()
    page.goto(other_site)
    assert page.evaluate(ATTACK, [server.base_url, apply, chat]) == "sent"
    time.sleep(1)
    assert not pwned.exists() and not (models / "evil.yaml").exists()
    refused = httpx.get(server.url("/metrics")).text
    assert 'status="403"' in refused, "the browser's requests did not reach the server"
    # and the page cannot read the server's answers either (no CORS for unlisted origins)
    error = page.evaluate("async (base) => { try { await fetch(base + '/v1/models'); return 'read'; }"
                          " catch (e) { return 'blocked'; } }", server.base_url)
    assert error == "blocked"


def test_a_listed_origin_streams_chat_through_cors(open_page, other_site, localai_server, echo_models):
    models, env = echo_models
    server = localai_server(models, env=env, args=["--cors-allow-origins", other_site])
    page = open_page()
    page.goto(other_site)
    status, text = page.evaluate(CORS_STREAM, [server.base_url])
    assert status == 200 and "data: [DONE]" in text
    deltas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    content = "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d["choices"])
    assert "one two three" in content
