"""Backend processes under a real ``local-ai run``: load once, crashes, unloads, limits, no orphans."""

from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.kernel_helpers import (alive, assert_error_shape, chat, echo_env, free_port, lines, loaded_pids,
                                  start_echo_process, system, wait_until, write_model)


@pytest.fixture
def models(tmp_path):
    return tmp_path / "models"


def logs(tmp_path, name="echo"):
    return tmp_path / f"{name}-loads.txt", tmp_path / f"{name}-frees.txt"


def echo_model(models, tmp_path, name="echo", *options):
    load_log, free_log = logs(tmp_path, name)
    write_model(models, name, options=[f"load_log:{load_log}", f"free_log:{free_log}", *options])
    return load_log, free_log


def test_concurrent_first_requests_load_once(localai_server, echo_backend, models, tmp_path):
    load_log, _ = echo_model(models, tmp_path, "echo", "load_delay:0.5")
    server = localai_server(models, env=echo_env(echo_backend))
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: chat(server, "echo", f"request {i}"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert all(f"request {i}" in r.json()["choices"][0]["message"]["content"] for i, r in enumerate(responses))
    [load] = lines(load_log)
    pids = loaded_pids(server)
    assert load == f"{pids['echo']} echo-model"
    assert server.log().count("starting backend echo for model echo") == 1


CRASH_ROUNDS = 3  # a crash races the process watcher: repeat it



def test_crash_on_request_then_restart(localai_server, echo_backend, models, tmp_path):
    load_log, _ = echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "echo", "hi").status_code == 200
    pids = [loaded_pids(server)["echo"]]
    for round_ in range(CRASH_ROUNDS):
        error = assert_error_shape(chat(server, "echo", "CRASH_NOW"), (500, 502, 503))
        assert "crash" in error["message"], error
        assert not alive(pids[-1])
        again = chat(server, "echo", f"after crash {round_}")
        assert again.status_code == 200, again.text
        assert again.json()["choices"][0]["message"]["content"] == f"echo: user: after crash {round_} assistant:"
        pids.append(loaded_pids(server)["echo"])
        assert alive(pids[-1])
    assert len(set(pids)) == CRASH_ROUNDS + 1
    assert len(lines(load_log)) == CRASH_ROUNDS + 1


def test_crash_mid_stream_is_an_sse_error_event(localai_server, echo_backend, models, tmp_path):
    echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(echo_backend))
    body = {"model": "echo", "stream": True,
            "messages": [{"role": "user", "content": "one two three four CRASH_MIDSTREAM five six"}]}
    for round_ in range(CRASH_ROUNDS):
        with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        payloads = [json.loads(e) for e in events[:-1]]
        text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices"))
        assert text == "echo: user: "  # the two words sent before the crash
        error = payloads[-1]["error"]
        assert "crash" in error["message"] and "type" in error and "code" in error
        assert all("error" not in p for p in payloads[:-1])
        again = chat(server, "echo", "fine again")
        assert again.status_code == 200, again.text


LINGERING_BACKEND = """\
import os, subprocess, sys, time
from localai.backend_server import serve
from localai.testing.echo_backend import EchoBackend


def crash_but_keep_the_socket():
    # exit now, but let a child hold the gRPC sockets open for another second
    sockets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                sockets.append(int(fd))
        except OSError:  # the fd of the listing itself
            pass
    subprocess.Popen(["sleep", "1"], pass_fds=sockets, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os._exit(3)


class Lingering(EchoBackend):
    def Predict(self, request, context):
        if "LINGER_CRASH" in request.Prompt:
            crash_but_keep_the_socket()
        return super().Predict(request, context)

    def PredictStream(self, request, context):
        for index, reply in enumerate(super().PredictStream(request, context)):
            if index == 2 and "LINGER_CRASH" in request.Prompt:
                time.sleep(0.2)
                crash_but_keep_the_socket()
            yield reply


serve(Lingering(), sys.argv[1:])
"""


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
def test_crash_noticed_before_the_connection_drops(localai_server, models, tmp_path, stream):
    """The exit is seen before the socket closes: the request still gets a "crashed" error, not a cancel."""
    script = tmp_path / "lingering.py"
    script.write_text(LINGERING_BACKEND)
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    run_sh.chmod(0o755)
    echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(run_sh))
    assert chat(server, "echo", "warm up").status_code == 200
    if stream:
        body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b LINGER_CRASH c d"}]}
        with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=30) as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert "crash" in json.loads(events[-2][len("data: "):])["error"]["message"]
    else:
        error = assert_error_shape(chat(server, "echo", "LINGER_CRASH"), (500, 502, 503))
        assert "crash" in error["message"]
    assert chat(server, "echo", "after").status_code == 200


def test_backend_shutdown_frees_and_stops(localai_server, echo_backend, models, tmp_path):
    _, free_log = echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "echo", "hi").status_code == 200
    pid = loaded_pids(server)["echo"]
    response = httpx.post(server.url("/backend/shutdown"), json={"model": "echo"})
    assert response.status_code == 200 and "unloaded" in response.json()["message"]
    assert lines(free_log) == [f"{pid} free"]
    wait_until(lambda: not alive(pid), 5)
    assert loaded_pids(server) == {}
    again = httpx.post(server.url("/v1/backend/shutdown"), json={"model": "echo"})
    assert "not loaded" in again.json()["message"]
    assert_error_shape(httpx.post(server.url("/backend/shutdown"), json={"model": "nope"}), 404)
    # explicit load brings it back
    assert httpx.post(server.url("/backend/load"), json={"model": "echo"}, timeout=30).status_code == 200
    assert alive(loaded_pids(server)["echo"])


@pytest.mark.parametrize("limit", [
    {"args": ["--max-active-backends", "1"]},
    {"env": {"LOCALAI_SINGLE_ACTIVE_BACKEND": "true"}},
], ids=["max-active-1", "single-active-env"])
def test_single_active_backend_unloads_the_other(localai_server, echo_backend, models, tmp_path, limit):
    _, free_a = echo_model(models, tmp_path, "a")
    echo_model(models, tmp_path, "b")
    server = localai_server(models, args=limit.get("args", ()), env=echo_env(echo_backend, **limit.get("env", {})))
    assert chat(server, "a", "hi").status_code == 200
    pid_a = loaded_pids(server)["a"]
    assert chat(server, "b", "hi").status_code == 200
    pids = loaded_pids(server)
    assert list(pids) == ["b"]
    assert lines(free_a) == [f"{pid_a} free"]
    wait_until(lambda: not alive(pid_a), 5)


def test_lru_eviction_with_two_slots(localai_server, echo_backend, models, tmp_path):
    for name in "abc":
        echo_model(models, tmp_path, name)
    server = localai_server(models, args=["--max-active-backends", "2"], env=echo_env(echo_backend))
    for name in "aba":  # b is now the least recently used
        assert chat(server, name, "hi").status_code == 200
    pid_b = loaded_pids(server)["b"]
    assert chat(server, "c", "hi").status_code == 200
    assert sorted(loaded_pids(server)) == ["a", "c"]
    assert lines(logs(tmp_path, "b")[1]) == [f"{pid_b} free"]
    assert lines(logs(tmp_path, "a")[1]) == []


def test_idle_watchdog_unloads(localai_server, echo_backend, models, tmp_path):
    _, free_log = echo_model(models, tmp_path)
    env = echo_env(echo_backend, LOCALAI_WATCHDOG_IDLE="true", LOCALAI_WATCHDOG_IDLE_TIMEOUT="1s",
                   LOCALAI_WATCHDOG_INTERVAL="0.2s")
    server = localai_server(models, env=env)
    assert chat(server, "echo", "hi").status_code == 200
    pid = loaded_pids(server)["echo"]
    started = time.monotonic()
    wait_until(lambda: not alive(pid), 6)
    assert time.monotonic() - started > 0.7  # not before the idle timeout
    assert loaded_pids(server) == {}
    assert lines(free_log) == [f"{pid} free"]


def test_idle_watchdog_spares_a_model_that_is_streaming(localai_server, echo_backend, models, tmp_path):
    echo_model(models, tmp_path, "echo", "token_delay:0.25")
    env = echo_env(echo_backend, LOCALAI_WATCHDOG_IDLE="true", LOCALAI_WATCHDOG_IDLE_TIMEOUT="0.5s",
                   LOCALAI_WATCHDOG_INTERVAL="0.1s")
    server = localai_server(models, env=env)
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g"}]}
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=30) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"  # 10 words at 0.25 s each outlive the 0.5 s idle timeout
    assert json.loads(events[-2][len("data: "):])["choices"][0]["finish_reason"] == "stop"
    assert chat(server, "echo", "still here").status_code == 200


def test_client_disconnect_mid_stream_releases_the_model(localai_server, echo_backend, models, tmp_path):
    echo_model(models, tmp_path, "echo", "token_delay:0.2")
    server = localai_server(models, env=echo_env(echo_backend))
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": " ".join(["w"] * 50)}]}
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=30) as response:
        events = response.iter_lines()  # keep a reference: a collected iterator closes the stream
        assert next(events).startswith("data: ")
        assert system(server)["loaded_models"][0]["in_flight"] == 1
    wait_until(lambda: system(server)["loaded_models"][0]["in_flight"] == 0, 3)
    assert chat(server, "echo", "next").status_code == 200


def test_sigkill_of_kernel_leaves_no_orphans(localai_server, echo_backend, models, tmp_path):
    echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "echo", "hi").status_code == 200
    pid = loaded_pids(server)["echo"]
    server.stop(signal.SIGKILL)
    wait_until(lambda: not alive(pid), 5)


def test_sigterm_stops_cleanly_and_stops_backends(localai_server, echo_backend, models, tmp_path):
    _, free_log = echo_model(models, tmp_path)
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "echo", "hi").status_code == 200
    pid = loaded_pids(server)["echo"]
    assert server.stop(signal.SIGTERM) == 0
    assert lines(free_log) == [f"{pid} free"]
    wait_until(lambda: not alive(pid), 5)


def test_external_backend_is_used_but_not_killed(localai_server, models, tmp_path):
    load_log, _ = echo_model(models, tmp_path)
    port = free_port()
    backend = start_echo_process(port)
    try:
        server = localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:127.0.0.1:{port}"})
        reply = chat(server, "echo", "remote")
        assert reply.status_code == 200, reply.text
        assert lines(load_log) == [f"{backend.pid} echo-model"]
        assert system(server)["loaded_models"][0]["address"] == f"127.0.0.1:{port}"
        assert server.stop() == 0
        time.sleep(0.3)
        assert backend.poll() is None and alive(backend.pid)
    finally:
        backend.kill()
        backend.wait()


def test_load_failure_reports_the_backend_reason(localai_server, echo_backend, models):
    write_model(models, "broken", model="fail-load")
    server = localai_server(models, env=echo_env(echo_backend))
    error = assert_error_shape(chat(server, "broken", "hi"), (500, 502))
    assert "echo: refusing to load" in error["message"]
    assert error["code"] == "model_load_failed"
    assert loaded_pids(server) == {}


def test_missing_backend_is_named(localai_server, echo_backend, models):
    write_model(models, "orphan", backend="no-such-backend")
    server = localai_server(models, env=echo_env(echo_backend))
    error = assert_error_shape(chat(server, "orphan", "hi"), (500, 502, 503))
    assert "no-such-backend" in error["message"]


def test_unhealthy_backend_times_out(localai_server, echo_backend, models, tmp_path):
    write_model(models, "slow")
    env = echo_env(echo_backend, ECHO_HEALTH_DELAY="5", LOCALAI_BACKEND_HEALTH_TIMEOUT="1")
    server = localai_server(models, env=env)
    started = time.monotonic()
    error = assert_error_shape(chat(server, "slow", "hi"), (500, 502, 503, 504))
    assert time.monotonic() - started < 4
    assert "healthy" in error["message"] and "slow" in error["message"]
    assert loaded_pids(server) == {}


def test_backend_output_is_logged_with_the_model_name(localai_server, echo_backend, models):
    write_model(models, "chatter")
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "chatter", "hi").status_code == 200
    wait_until(lambda: "[chatter] echo-backend listening on" in server.log(), 5)
