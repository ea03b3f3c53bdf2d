"""The Ray plugin end to end: a multi-node Ray cluster on 127.0.0.1, kernel replicas connected to
it, the official ``openai`` SDK as the client, the echo backend as the model."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from ray_test_helpers import loaded, pid_alive, wait_until, write_model


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
