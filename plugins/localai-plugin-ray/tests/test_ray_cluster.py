"""The Ray plugin end to end: a multi-node Ray cluster on 127.0.0.1, kernel replicas connected to
it, the official ``openai`` SDK as the client, the echo backend as the model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from ray_test_helpers import loaded, pid_alive, wait_until, write_model

from localai.testing.server import LocalAIServer


def client(server, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=retries, timeout=60)


def ask(server, model: str, text: str = "hello there") -> str:
    reply = client(server).chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def test_placement_by_resource(ray_cluster, shared_dir, kernels):
    models = shared_dir / "models"
    write_model(models, "gpu-echo", ray={"num_gpus": 1})
    write_model(models, "cpu-echo", ray={"num_cpus": 1, "resources": {"zone_cpu": 1}})
    (kernel,) = kernels(1)
    assert ask(kernel, "gpu-echo") == "echo: hello there"
    assert ask(kernel, "cpu-echo") == "echo: hello there"
    gpu = loaded(kernel, "gpu-echo")["placement"][0]
    cpu = loaded(kernel, "cpu-echo")["placement"][0]
    assert ray_cluster.name_of(gpu["node_id"]) == "gpu"
    assert gpu["gpu_ids"] == ["0"]
    assert ray_cluster.name_of(cpu["node_id"]) == "cpu"
    assert cpu["gpu_ids"] == []
    # the backend process itself is pinned to the GPU Ray gave its actor
    assert "CUDA_VISIBLE_DEVICES=0" in environ(gpu["pid"])
    assert "CUDA_VISIBLE_DEVICES=0" not in environ(cpu["pid"])


def environ(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def test_one_backend_shared_by_two_kernels(shared_dir, kernels):
    """Loaded by one kernel, used by the other; stopped only when the last kernel lets go."""
    load_log = shared_dir / "shared-echo.loads"
    write_model(shared_dir / "models", "shared-echo", options=[f"load_log:{load_log}"])
    first, second = kernels(2)
    assert ask(first, "shared-echo") == "echo: hello there"
    assert ask(second, "shared-echo", "from the other kernel") == "echo: from the other kernel"
    a, b = loaded(first, "shared-echo"), loaded(second, "shared-echo")
    assert a["address"] == b["address"]
    assert a["placement"][0]["pid"] == b["placement"][0]["pid"]
    assert len(load_log.read_text().splitlines()) == 1  # LoadModel ran once, by the first kernel
    assert b["placement"][0]["kernels"] == 2
    backend_pid = a["placement"][0]["pid"]

    # the second kernel unloads: the first keeps being served by the same process
    httpx.post(second.url("/backend/shutdown"), json={"model": "shared-echo"}, timeout=30).raise_for_status()
    assert loaded(second, "shared-echo") is None
    assert pid_alive(backend_pid)
    assert ask(first, "shared-echo", "still here") == "echo: still here"
    # the last one unloads: the process stops
    httpx.post(first.url("/backend/shutdown"), json={"model": "shared-echo"}, timeout=30).raise_for_status()
    wait_until(lambda: not pid_alive(backend_pid), 15)


def test_replicas_spread_requests(ray_cluster, shared_dir, kernels):
    """``replicas: 2``: two processes on two nodes; each kernel alternates between them."""
    requests = shared_dir / "replicas.requests"
    load_log = shared_dir / "replicas.loads"
    write_model(shared_dir / "models", "replicated-echo", options=[f"request_log:{requests}", f"load_log:{load_log}"],
                ray={"replicas": 2, "num_cpus": 0.5})
    first, second = kernels(2)
    for i in range(6):
        assert ask(first, "replicated-echo", f"a{i}") == f"echo: a{i}"
        assert ask(second, "replicated-echo", f"b{i}") == f"echo: b{i}"
    placement = loaded(first, "replicated-echo")["placement"]
    assert len(placement) == 2
    assert len({p["node_id"] for p in placement}) == 2  # SPREAD: one replica per node
    pids = {str(p["pid"]) for p in placement}
    assert {line.split()[0] for line in load_log.read_text().splitlines()} == pids  # each loaded once
    assert len(load_log.read_text().splitlines()) == 2
    served = [line.split()[0] for line in requests.read_text().splitlines()]
    assert len(served) == 12
    assert {pid: served.count(pid) for pid in pids} == {pid: 6 for pid in pids}
    assert loaded(second, "replicated-echo")["addresses"] == loaded(first, "replicated-echo")["addresses"]

    # both kernels stop gracefully (SIGTERM): the last one to let go stops every replica
    assert first.stop() == 0
    assert all(pid_alive(int(pid)) for pid in pids)
    assert second.stop() == 0
    wait_until(lambda: not any(pid_alive(int(pid)) for pid in pids), 15)


def test_kernel_replica_dying_loses_nothing(shared_dir, kernels):
    """A kernel killed with SIGKILL: the backend it started keeps serving the other kernel."""
    load_log = shared_dir / "survivor.loads"
    write_model(shared_dir / "models", "survivor-echo", options=[f"load_log:{load_log}"])
    first, second = kernels(2)
    assert ask(first, "survivor-echo") == "echo: hello there"
    pid = loaded(first, "survivor-echo")["placement"][0]["pid"]
    first.stop(sig=signal.SIGKILL)
    assert pid_alive(pid)
    assert ask(second, "survivor-echo", "after the crash") == "echo: after the crash"
    assert loaded(second, "survivor-echo")["placement"][0]["pid"] == pid
    assert len(load_log.read_text().splitlines()) == 1


def test_node_lost_backend_restarts_elsewhere(ray_cluster, shared_dir, kernels):
    """Kill the node running a backend: both kernels notice, the next request starts it on another node."""
    ray_cluster.add("fault-1", num_cpus=1, resources={"zone_fault": 1})
    ray_cluster.add("fault-2", num_cpus=1, resources={"zone_fault": 1})
    load_log = shared_dir / "fault.loads"
    write_model(shared_dir / "models", "fault-echo", options=[f"load_log:{load_log}"],
                ray={"num_cpus": 1, "resources": {"zone_fault": 1}})
    first, second = kernels(2)
    assert ask(first, "fault-echo") == "echo: hello there"
    assert ask(second, "fault-echo") == "echo: hello there"
    before = loaded(first, "fault-echo")["placement"][0]
    lost = ray_cluster.name_of(before["node_id"])
    assert lost in ("fault-1", "fault-2")

    ray_cluster.kill(lost)
    wait_until(lambda: not pid_alive(before["pid"]), 15)  # the backend died with its node
    for kernel in (first, second):  # each kernel notices and drops the model
        wait_until(lambda k=kernel: loaded(k, "fault-echo") is None, 20)

    # the next request (no client retries) succeeds, on the surviving node
    assert ask(first, "fault-echo", "recovered") == "echo: recovered"
    assert ask(second, "fault-echo", "recovered too") == "echo: recovered too"
    after = loaded(first, "fault-echo")["placement"][0]
    assert ray_cluster.name_of(after["node_id"]) == ({"fault-1", "fault-2"} - {lost}).pop()
    assert loaded(second, "fault-echo")["placement"][0]["pid"] == after["pid"]
    assert len(load_log.read_text().splitlines()) == 2  # once per process, not per kernel


def test_no_node_has_the_resources(shared_dir, kernels):
    """A model asking for resources no node has: an OpenAI-shaped error after the placement timeout."""
    write_model(shared_dir / "models", "tpu-echo", ray={"resources": {"tpu": 1}})
    (kernel,) = kernels(1)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(kernel, "tpu-echo")
    error = caught.value.body
    assert error["code"] == "model_load_failed"
    assert "no Ray node could take model 'tpu-echo'" in error["message"]
    assert "tpu=1" in error["message"]


def test_invalid_ray_options(shared_dir, kernels):
    write_model(shared_dir / "models", "bad-echo", ray={"num_gpu": 1})
    (kernel,) = kernels(1)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(kernel, "bad-echo")
    assert "invalid Ray options: ray.num_gpu" in caught.value.body["message"]


def test_opt_out_runs_locally(shared_dir, kernels):
    """``ray: false`` keeps a model on the kernel's machine, as a child of the kernel."""
    write_model(shared_dir / "models", "local-echo", ray=False)
    (kernel,) = kernels(1)
    assert ask(kernel, "local-echo") == "echo: hello there"
    entry = loaded(kernel, "local-echo")
    assert "placement" not in entry
    assert psutil.Process(entry["pid"]).ppid() == kernel.pid


def test_ray_is_not_imported_without_an_address(shared_dir, kernels):
    """The plugin is installed and loaded, but with no Ray address the kernel never loads Ray."""
    write_model(shared_dir / "models", "plain-echo")
    (plain,) = kernels(1, ray=False)
    (clustered,) = kernels(1)
    plugins = httpx.get(plain.url("/plugins"), timeout=10).json()
    assert any(p["name"] == "ray" and not p["error"] for p in plugins)
    assert ask(plain, "plain-echo") == "echo: hello there"
    assert "placement" not in loaded(plain, "plain-echo")
    assert not ray_loaded(plain.pid)
    assert ray_loaded(clustered.pid)  # the check can see Ray when it is there


def ray_loaded(pid: int) -> bool:
    """True when Ray's core library is mapped into process ``pid``."""
    return "_raylet" in Path(f"/proc/{pid}/maps").read_text()


MISSING_FILE_DRIVER = """
import asyncio, sys
from localai.errors import LoadError
from localai_plugin_ray.cluster import RayBackend
from localai_plugin_ray.options import RayOptions

backend = RayBackend(address=sys.argv[1], model="far-model", name="far-model:test", argv=["/bin/true"], env={},
                     cwd=None, files=["/bin/true", "/nowhere/far-model.gguf"], options=RayOptions(),
                     load_timeout=10)
try:
    asyncio.run(backend.start())
except LoadError as exc:
    print("LoadError:", exc)
"""


def test_files_missing_on_the_node_fail_clearly(ray_cluster):
    """The actor checks the shared paths on its node before starting the backend."""
    result = subprocess.run([sys.executable, "-c", MISSING_FILE_DRIVER, ray_cluster.address],
                            capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert "LoadError: cannot start the backend of model 'far-model' on Ray" in out, result.stdout + result.stderr
    assert "/nowhere/far-model.gguf not found on Ray node 127.0.0.1" in out
    assert "/bin/true" not in out.split("on Ray:")[1].split("not found")[0]
    assert "must be on a path every node shares" in out


def test_ray_cli_lists_and_stops_backends(ray_cluster, shared_dir, kernels):
    write_model(shared_dir / "models", "listed-echo")
    (kernel,) = kernels(1)
    assert ask(kernel, "listed-echo") == "echo: hello there"
    pid = loaded(kernel, "listed-echo")["placement"][0]["pid"]
    env = {**os.environ, "LOCALAI_RAY_ADDRESS": ray_cluster.address}
    listing = subprocess.run([sys.executable, "-m", "localai", "ray", "list", "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
    rows = {row["name"].split(":")[0]: row for row in json.loads(listing.stdout)}
    assert rows["listed-echo"]["pid"] == pid and rows["listed-echo"]["kernels"] == 1
    assert rows["listed-echo"]["state"] == "loaded"

    stopped = subprocess.run([sys.executable, "-m", "localai", "ray", "stop", "listed-echo"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "stopped listed-echo:" in stopped.stdout, stopped.stderr
    wait_until(lambda: not pid_alive(pid), 15)
    wait_until(lambda: loaded(kernel, "listed-echo") is None, 15)
    assert ask(kernel, "listed-echo", "again") == "echo: again"  # restarted on demand


def test_backend_crash_is_restarted_for_every_kernel(ray_cluster, shared_dir, kernels):
    """The backend process dies (its actor does not): both kernels drop it, the actor closes and gives
    its resources back, and the next request places a fresh process that both kernels share."""
    load_log = shared_dir / "crash.loads"
    write_model(shared_dir / "models", "crash-echo", options=[f"load_log:{load_log}"],
                ray={"resources": {"zone_cpu": 1}})
    first, second = kernels(2)
    assert ask(first, "crash-echo") == "echo: hello there"
    assert ask(second, "crash-echo") == "echo: hello there"
    pid = loaded(first, "crash-echo")["placement"][0]["pid"]
    with pytest.raises(openai.InternalServerError) as caught:
        ask(first, "crash-echo", "CRASH_NOW")
    assert caught.value.body["code"] == "backend_crashed"
    for kernel in (first, second):
        wait_until(lambda k=kernel: loaded(k, "crash-echo") is None, 15)
    # the actor closed: its zone_cpu resource is free again for the new one
    assert ask(second, "crash-echo", "back") == "echo: back"
    assert ask(first, "crash-echo", "back too") == "echo: back too"
    new = loaded(first, "crash-echo")["placement"][0]
    assert new["pid"] != pid and loaded(second, "crash-echo")["placement"][0]["pid"] == new["pid"]
    assert new["generation"] == 1  # a new actor, not the old one restarting its process
    assert len(load_log.read_text().splitlines()) == 2


def test_unreachable_cluster_fails_at_start(shared_dir):
    """A wrong Ray address stops ``local-ai run`` at once with a clear message (no endless retries)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = LocalAIServer(shared_dir / "models", args=["--ray-address", f"127.0.0.1:{port}"])
    with pytest.raises(RuntimeError, match="local-ai exited") as caught:
        server.start(timeout=30)
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in str(caught.value)
