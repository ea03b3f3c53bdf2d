"""Fixtures: a real multi-node Ray cluster on 127.0.0.1 (session) and kernel replicas connected to it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before ray is imported: see ray_test_helpers

import pytest  # noqa: E402
from ray_test_helpers import LocalCluster  # noqa: E402

from localai.testing.server import LocalAIServer, echo_backend_script  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    cluster = LocalCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def shared_dir():
    """Models and the echo backend, on a path every node sees (one machine: any path)."""
    path = Path(tempfile.mkdtemp(prefix="lai-ray-shared-"))
    (path / "models").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def echo_run_sh(shared_dir: Path) -> Path:
    return echo_backend_script(shared_dir / "echo-backend")


@pytest.fixture
def kernels(ray_cluster, shared_dir, echo_run_sh):
    """Factory: ``kernels(n, ray=True, env=None)`` starts ``n`` kernel replicas on the shared models dir."""
    started: list[LocalAIServer] = []

    def start(n: int = 2, *, ray: bool = True, env: dict | None = None) -> list[LocalAIServer]:
        servers = []
        for _ in range(n):
            args = ["--ray-address", ray_cluster.address] if ray else []
            server = LocalAIServer(shared_dir / "models", args=args, cwd=shared_dir, env={
                "LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_run_sh}",
                "LOCALAI_RAY_PLACEMENT_TIMEOUT": "8",
                "LOCALAI_LOG_LEVEL": "info",
                **(env or {}),
            })
            started.append(server)
            servers.append(server.start(timeout=90))
        return servers

    yield start
    for server in started:
        server.stop()


