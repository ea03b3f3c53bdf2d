"""Observability under a real ``local-ai run``: ``/metrics`` counters move (requests by route,
latency, tokens, loads, crashes, gallery jobs) and every response carries ``X-Request-ID``."""

from __future__ import annotations

import logging
import re

import httpx
import openai

from localai import metrics as localai_metrics
from tests.kernel_helpers import alive, assert_error_shape, chat, echo_env, loaded_pids, wait_until, write_model
from tests.test_admission import metric


def test_counters_move(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "echo")
    write_model(models, "broken", model="fail-load")
    server = localai_server(models, env=echo_env(echo_backend, LOCALAI_BACKENDS_PATH=str(tmp_path / "backends"),
                                                 LOCALAI_ALLOW_BACKEND_URIS="true"))
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one two three"}])
    stream = client.chat.completions.create(model="echo", stream=True,
                                            messages=[{"role": "user", "content": "four five"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    done = client.completions.create(model="echo", prompt="six seven eight")
    tokens = reply.usage.completion_tokens + len("echo: user: four five assistant:".split()) \
        + done.usage.completion_tokens
    assert metric(server, "localai_tokens_generated_total", model="echo") == tokens

    route = {"method": "POST", "route": "/v1/chat/completions"}
    assert metric(server, "localai_http_requests_total", status="200", **route) == 2
    assert metric(server, "localai_http_request_duration_seconds_count", **route) == 2
    assert metric(server, "localai_http_requests_total", method="POST", route="/v1/completions", status="200") == 1
    httpx.get(server.url("/no/such/page/12345"))
    assert metric(server, "localai_http_requests_total", route="<unmatched>", status="404") == 1
    assert metric(server, "localai_http_requests_total", route="/no/such/page/12345") == 0

    assert metric(server, "localai_backend_loads_total", model="echo", backend="echo") == 1
    pid = loaded_pids(server)["echo"]
    assert_error_shape(chat(server, "echo", "CRASH_NOW"), (500, 502, 503))
    wait_until(lambda: not alive(pid))
    wait_until(lambda: metric(server, "localai_backend_crashes_total", model="echo") == 1)
    assert chat(server, "echo", "again").status_code == 200
    assert metric(server, "localai_backend_loads_total", model="echo") == 2
    assert_error_shape(chat(server, "broken", "hi"), 502)
    assert metric(server, "localai_backend_load_failures_total", model="broken", backend="echo") == 1

    good = httpx.post(server.url("/backends/apply"), json={"id": str(echo_backend.parent), "name": "echo2"}).json()
    bad = httpx.post(server.url("/backends/apply"), json={"id": str(tmp_path / "missing"), "name": "nope"}).json()
    for job in (good, bad):
        wait_until(lambda: httpx.get(server.url(f"/backends/jobs/{job['id']}")).json()["processed"], timeout=30)
    assert metric(server, "localai_gallery_jobs_total", kind="install", outcome="success") == 1
    assert metric(server, "localai_gallery_jobs_total", kind="install", outcome="error") == 1
    text = httpx.get(server.url("/metrics")).text
    assert "process_resident_memory_bytes" in text
    assert httpx.get(server.url("/metrics")).headers["content-type"].startswith("text/plain")


def test_request_ids(localai_server, echo_backend, tmp_path):
    write_model(tmp_path / "models", "echo")
    server = localai_server(tmp_path / "models", env=echo_env(echo_backend, LOCALAI_LOG_LEVEL="debug"))
    generated = httpx.get(server.url("/v1/models")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert httpx.get(server.url("/v1/models")).headers["x-request-id"] != generated
    mine = "client-req-42"
    assert httpx.get(server.url("/v1/models"), headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
    for bad in ("has spaces", "x" * 200, "semi;colon"):
        echoed = httpx.get(server.url("/healthz"), headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert httpx.get(server.url("/nope"), headers={"X-Request-ID": "r-404"}).headers["x-request-id"] == "r-404"
    error = httpx.post(server.url("/v1/chat/completions"), json={"model": "missing"},
                       headers={"X-Request-ID": "r-400"})
    assert error.status_code >= 400 and error.headers["x-request-id"] == "r-400"
    with httpx.stream("POST", server.url("/v1/chat/completions"), headers={"X-Request-ID": "r-stream"},
                      json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.headers["x-request-id"] == "r-stream"
        r.read()
    wait_until(lambda: "request_id=r-stream" in server.log() and f"request_id={mine}" in server.log())


def test_key_protected_metrics(localai_server, tmp_path):
    server = localai_server(tmp_path / "models", env={"LOCALAI_API_KEY": "secret"})
    response = httpx.get(server.url("/metrics"), headers={"X-Request-ID": "r-401"})
    assert_error_shape(response, 401)
    assert response.headers["x-request-id"] == "r-401"
    assert httpx.get(server.url("/metrics"), headers={"x-api-key": "secret"}).status_code == 200
    assert metric(server, "localai_http_requests_total", headers={"x-api-key": "secret"}, route="/metrics",
                  status="401") == 1


def test_log_filter_adds_the_request_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", (), None)
    localai_metrics.RequestIdFilter().filter(record)
    assert record.request_id == ""
    token = localai_metrics.REQUEST_ID.set("abc")
    try:
        localai_metrics.RequestIdFilter().filter(record)
    finally:
        localai_metrics.REQUEST_ID.reset(token)
    assert record.request_id == " [abc]"
