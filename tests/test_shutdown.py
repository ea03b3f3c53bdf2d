"""Stopping the kernel: SIGTERM drains in-flight streams (up to ``LOCALAI_SHUTDOWN_TIMEOUT``) and
stops every backend; gallery jobs a SIGKILL interrupted are reported failed after a restart."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.kernel_helpers import alive, echo_env, loaded_pids, wait_until, write_model
from tests.test_admission import metric


class Trickle(BaseHTTPRequestHandler):
    """Announces a large file and sends it a kilobyte at a time, forever."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(b"\0" * 1024)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


@pytest.fixture
def trickle():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()
    server.shutdown()
    server.server_close()


def test_jobs_interrupted_by_a_kill_are_failed_after_restart(localai_server, trickle, tmp_path):
    backends = tmp_path / "backends"
    env = {"LOCALAI_BACKENDS_PATH": str(backends), "LOCALAI_BACKENDS_SYSTEM_PATH": str(tmp_path / "system"),
           "LOCALAI_ALLOW_BACKEND_URIS": "true", "LOCALAI_ALLOW_PRIVATE_URLS": "true"}  # the trickle server: loopback
    server = localai_server(tmp_path / "models", env=env)
    backend_job = httpx.post(server.url("/backends/apply"),
                             json={"id": f"{trickle}/slow-backend.tar.gz", "name": "slow"}).json()["id"]
    model_job = httpx.post(server.url("/models/apply"), json={"id": f"{trickle}/slow-model.gguf"}).json()["id"]
    for job_id, route in ((backend_job, "backends"), (model_job, "models")):
        wait_until(lambda: httpx.get(server.url(f"/{route}/jobs/{job_id}")).json()["downloaded_size"] > 0,
                   timeout=30)
    records = json.loads((backends / ".jobs.json").read_text())
    assert {r["id"] for r in records} == {backend_job, model_job}
    server.stop(signal.SIGKILL)

    server = localai_server(tmp_path / "models", env=env)
    for job_id, route in ((backend_job, "backends"), (model_job, "models")):
        status = httpx.get(server.url(f"/{route}/jobs/{job_id}")).json()
        assert status["processed"] is True and status["error"] == "interrupted by a restart", status
        assert status["id"] == job_id
    assert httpx.get(server.url(f"/models/jobs/{backend_job}")).json()["processed"] is True
    assert backend_job in httpx.get(server.url("/backends/jobs")).json()
    assert model_job in httpx.get(server.url("/models/jobs")).json()
    assert not (backends / ".jobs.json").exists()  # nothing is running now
    assert metric(server, "localai_gallery_jobs_total", outcome="interrupted", kind="install") == 1
    assert metric(server, "localai_gallery_jobs_total", outcome="interrupted", kind="model-install") == 1


def stream_in_thread(server, words: int, events: list, first: threading.Event):
    body = {"model": "echo", "stream": True,
            "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(words))}]}

    def run():
        try:
            with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first.set()
        except httpx.HTTPError as exc:
            events.append(exc)
        first.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_lets_an_inflight_stream_finish(localai_server, echo_backend, tmp_path):
    write_model(tmp_path / "models", "echo", options=["token_delay:0.15"])
    server = localai_server(tmp_path / "models", env=echo_env(echo_backend))
    events: list = []
    first = threading.Event()
    thread = stream_in_thread(server, 20, events, first)  # about 3 s of tokens
    assert first.wait(30)
    backend = loaded_pids(server)["echo"]
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: refused(server.port), timeout=5)  # no new connections while draining
    assert server.proc.poll() is None and thread.is_alive()
    thread.join(30)
    assert events[-1] == "[DONE]", events[-3:]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if json.loads(e).get("choices"))
    assert text == "echo: user: " + " ".join(f"w{i}" for i in range(20)) + " assistant:"
    assert server.proc.wait(30) == 0
    wait_until(lambda: not alive(backend), timeout=15)  # every backend stopped
    assert "server stopped" in server.log()


def test_sigterm_drain_has_a_deadline(localai_server, echo_backend, tmp_path):
    write_model(tmp_path / "models", "echo", options=["token_delay:0.2"])
    server = localai_server(tmp_path / "models", env=echo_env(echo_backend, LOCALAI_SHUTDOWN_TIMEOUT="1s"))
    events: list = []
    first = threading.Event()
    thread = stream_in_thread(server, 100, events, first)  # about 20 s of tokens
    assert first.wait(30)
    backend = loaded_pids(server)["echo"]
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(20)
    assert time.monotonic() - started < 10
    thread.join(30)
    assert not thread.is_alive() and events[-1] != "[DONE]"  # cut at the deadline
    wait_until(lambda: not alive(backend), timeout=15)
