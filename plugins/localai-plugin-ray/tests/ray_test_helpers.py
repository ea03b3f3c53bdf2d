"""Helpers of the Ray plugin tests: a real multi-node Ray cluster on this machine (one raylet
per node, all on 127.0.0.1), model YAML, polling.

Nodes, told apart by their resources:
  head      num_cpus=1, {"head": 1}
  gpu       num_cpus=2, num_gpus=1 (a logical GPU: Ray assigns it, no hardware needed), {"zone_gpu": 1}
  cpu       num_cpus=2, {"zone_cpu": 1}
Tests that kill nodes add their own.
"""

from __future__ import annotations

import os

# a loopback-bound cluster: keep Ray (in this process and the kernels) on 127.0.0.1
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import yaml  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from localai.testing.server import LocalAIServer  # noqa: E402

# node death is noticed after 3 missed 0.5 s health checks (Ray's default is about 15-30 s)
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                 "health_check_initial_delay_ms": 0}
NODE_ARGS = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False}


class LocalCluster:
    """The Ray cluster and its named nodes."""

    def __init__(self):
        # Every path Ray uses lies under one directory of this cluster's own: the nodes' temp_dir,
        # and (through RAY_TMPDIR, inherited by the kernels this test starts) Ray's default temp
        # dir, where ``Cluster`` writes the address file. Nothing depends on a leftover /tmp/ray.
        # The name stays short: Ray's Unix socket paths live under it (107-byte limit).
        self.root = tempfile.mkdtemp(prefix="r")
        self.temp_dir = os.path.join(self.root, "ray")
        os.makedirs(self.temp_dir)
        self._saved_tmpdir = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.root
        self.cluster = Cluster(initialize_head=True, connect=False, head_node_args={
            **NODE_ARGS, "num_cpus": 1, "resources": {"head": 1}, "temp_dir": self.temp_dir,
            "_system_config": SYSTEM_CONFIG,
        })
        self.nodes = {"head": self.cluster.head_node}
        self.add("gpu", num_cpus=2, num_gpus=1, resources={"zone_gpu": 1})
        self.add("cpu", num_cpus=2, resources={"zone_cpu": 1})

    @property
    def address(self) -> str:
        return self.cluster.address

    def add(self, name: str, **args):
        node = self.cluster.add_node(**NODE_ARGS, **args)
        self.cluster.wait_for_nodes()
        self.nodes[name] = node
        return node

    def name_of(self, node_id: str) -> str:
        for name, node in self.nodes.items():
            if node.node_id == node_id:
                return name
        raise AssertionError(f"unknown node {node_id}")

    def kill(self, name: str) -> None:
        """Kill a node's processes (raylet, agents, workers) at once, as a lost machine would be."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)
        if self._saved_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self._saved_tmpdir


def write_model(models: Path, name: str, *, ray=None, options=(), **extra) -> None:
    config = {"name": name, "backend": "echo", "parameters": {"model": "echo-model"},
              "known_usecases": ["chat", "completion"], "options": list(options),
              "template": {"use_tokenizer_template": True}, **extra}
    if ray is not None:
        config["ray"] = ray
    (models / f"{name}.yaml").write_text(yaml.safe_dump(config))


def loaded(server, model: str) -> dict | None:
    """The ``/system`` entry of ``model`` on ``server``, or None when it is not loaded."""
    for entry in httpx.get(server.url("/system"), timeout=10).json()["loaded_models"]:
        if entry["id"] == model:
            return entry
    return None


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_hard(server: LocalAIServer) -> None:
    server.stop(sig=signal.SIGKILL)
