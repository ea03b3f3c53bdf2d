"""Admission control under a real ``local-ai run``: per-model limit and queue (503 +
Retry-After beyond it, nothing lost), streams hold their slot until they end, the global cap,
and the cooldown after a failed load (one backend start, not one per request)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kernel_helpers import assert_error_shape, chat, echo_env, lines, wait_until, write_model

WORDS = " ".join(f"w{i}" for i in range(10))  # 10 streamed words, token_delay apart


def metric(server, name: str, *, headers: dict | None = None, **labels) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    text = httpx.get(server.url("/metrics"), headers=headers, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def stream_body(model: str, text: str = WORDS) -> dict:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}


def test_queue_full_is_503_with_retry_after_and_nothing_is_lost(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "slow", options=["token_delay:0.25"],
                limits={"max_concurrent": 2, "max_queue": 2, "retry_after_seconds": 7})
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "slow", "warm up").status_code == 200
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0, timeout=60)
    peaks = {"in_flight": 0.0, "queued": 0.0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peaks["in_flight"] = max(peaks["in_flight"], metric(server, "localai_model_in_flight", model="slow"))
            peaks["queued"] = max(peaks["queued"], metric(server, "localai_model_queue_depth", model="slow"))
            time.sleep(0.05)

    def one(i: int):
        try:
            stream = client.chat.completions.create(model="slow", stream=True,
                                                    messages=[{"role": "user", "content": f"{WORDS} n{i}"}])
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.APIStatusError as exc:
            return exc

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(6)))
    finally:
        stop.set()
        watcher.join()
    done = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(done) == 4 and len(refused) == 2, results
    for i, result in enumerate(results):
        if isinstance(result, str):
            assert result == f"echo: user: {WORDS} n{i} assistant:"
    for exc in refused:
        assert exc.status_code == 503
        assert exc.response.headers["retry-after"] == "7"
        assert exc.body["code"] == "model_busy" and "busy" in exc.body["message"]
    assert peaks == {"in_flight": 2.0, "queued": 2.0}
    assert metric(server, "localai_model_in_flight", model="slow") == 0
    assert metric(server, "localai_model_queue_depth", model="slow") == 0


def test_sdk_retries_after_retry_after(localai_server, echo_backend, tmp_path):
    """The official SDK honours Retry-After: a refused request succeeds on its retry."""
    models = tmp_path / "models"
    write_model(models, "one", options=["token_delay:0.1"],
                limits={"max_concurrent": 1, "max_queue": 0, "retry_after_seconds": 1})
    server = localai_server(models, env=echo_env(echo_backend))
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=stream_body("one"), timeout=30) as first:
        assert first.status_code == 200
        client = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=3, timeout=30)
        reply = client.chat.completions.create(model="one", messages=[{"role": "user", "content": "later"}])
        first.read()
    assert reply.choices[0].message.content == "echo: user: later assistant:"


def test_stream_holds_its_slot_until_it_ends(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "one", options=["token_delay:0.2"], limits={"max_concurrent": 1, "max_queue": 0})
    server = localai_server(models, env=echo_env(echo_backend))
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=stream_body("one"), timeout=30) as stream:
        events = stream.iter_lines()
        assert next(line for line in events if line.startswith("data: "))
        busy = chat(server, "one", "while streaming")
        error = assert_error_shape(busy, 503)
        assert error["code"] == "model_busy" and busy.headers["retry-after"] == "1"
        assert metric(server, "localai_model_in_flight", model="one") == 1
        rest = [line for line in events if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert metric(server, "localai_model_in_flight", model="one") == 0
    assert chat(server, "one", "after the stream").status_code == 200


def test_queued_requests_are_all_served(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "one", options=["token_delay:0.1"], limits={"max_concurrent": 1, "max_queue": 8})
    server = localai_server(models, env=echo_env(echo_backend))
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(
            lambda i: httpx.post(server.url("/v1/chat/completions"), json=stream_body("one", f"a b c d n{i}"),
                                 timeout=60), range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    for i, response in enumerate(responses):
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in response.text.splitlines()
                       if line.startswith("data: {") and json.loads(line[6:]).get("choices"))
        assert text == f"echo: user: a b c d n{i} assistant:"


def test_disconnected_waiter_leaves_the_queue(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "one", options=["token_delay:0.2"], limits={"max_concurrent": 1, "max_queue": 1})
    server = localai_server(models, env=echo_env(echo_backend))
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=stream_body("one"), timeout=30) as stream:
        assert stream.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url("/v1/chat/completions"), json=stream_body("one"), timeout=0.5)
        wait_until(lambda: metric(server, "localai_model_queue_depth", model="one") == 0, timeout=5)
        queued = threading.Thread(target=lambda: chat(server, "one", "queued"))
        queued.start()  # the queue has room again
        wait_until(lambda: metric(server, "localai_model_queue_depth", model="one") == 1, timeout=5)
        stream.read()
    queued.join(30)
    assert metric(server, "localai_model_in_flight", model="one") == 0


def test_global_cap(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "a", options=["token_delay:0.2"])
    write_model(models, "b")
    server = localai_server(models, env=echo_env(echo_backend, LOCALAI_MAX_CONCURRENT_BACKEND_REQUESTS="1"))
    assert chat(server, "b", "warm").status_code == 200
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=stream_body("a"), timeout=30) as stream:
        assert stream.status_code == 200
        error = assert_error_shape(busy := chat(server, "b", "other model"), 503)
        assert error["code"] == "server_busy" and busy.headers["retry-after"]
        stream.read()
    assert chat(server, "b", "again").status_code == 200


def test_default_limit_from_env(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    write_model(models, "one", options=["token_delay:0.2"])
    server = localai_server(models, env=echo_env(echo_backend, LOCALAI_MAX_CONCURRENT_PER_MODEL="1",
                                                 LOCALAI_MAX_QUEUE_PER_MODEL="0"))
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=stream_body("one"), timeout=30) as stream:
        assert stream.status_code == 200
        assert_error_shape(chat(server, "one", "busy"), 503)
        stream.read()


def test_load_failure_cooldown(localai_server, echo_backend, tmp_path):
    models = tmp_path / "models"
    load_log = tmp_path / "loads.txt"
    write_model(models, "broken", model="fail-load", options=[f"load_log:{load_log}"])
    server = localai_server(models, env=echo_env(echo_backend, LOCALAI_MODEL_LOAD_FAILURE_COOLDOWN="3s"))
    first = assert_error_shape(chat(server, "broken", "hi"), 502)
    assert first["code"] == "model_load_failed"
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0)
    started = time.monotonic()
    for _ in range(5):
        response = chat(server, "broken", "again")
        error = assert_error_shape(response, 503)
        assert error["code"] == "model_load_failed"
        assert first["message"] in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 3
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "sdk"}])
        assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"]
    load = httpx.post(server.url("/backend/load"), json={"model": "broken"})
    assert_error_shape(load, 503)
    assert time.monotonic() - started < 2.5
    assert len(lines(load_log)) == 1  # the backend was started once, not once per request
    assert server.log().count("starting backend echo for model broken") == 1
    assert metric(server, "localai_backend_load_failures_total", model="broken") == 1
    time.sleep(max(0.0, started + 3.2 - time.monotonic()))
    assert_error_shape(chat(server, "broken", "after the cooldown"), 502)  # tried again
    assert len(lines(load_log)) == 2
