"""pytest fixtures for LocalAI and for authors of plugins and backends.

Registered through the ``pytest11`` entry point, so installing ``localai-kernel`` makes
``localai_server`` and ``echo_backend`` available in any test suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .server import LocalAIServer, echo_backend_script


@pytest.fixture
def echo_backend(tmp_path: Path) -> Path:
    """Path of a ``run.sh`` that starts the deterministic echo backend."""
    return echo_backend_script(tmp_path / "echo-backend")


@pytest.fixture
def localai_server(tmp_path: Path):
    """Factory: ``localai_server(models_path=None, args=(), env=None)`` starts a real server.

    Every server started through it is stopped when the test ends.
    """
    servers: list[LocalAIServer] = []

    def start(models_path: Path | None = None, *, args=(), env=None, timeout: float = 60.0) -> LocalAIServer:
        path = models_path or tmp_path / "models"
        path.mkdir(parents=True, exist_ok=True)
        server = LocalAIServer(path, args=list(args), env=env, cwd=tmp_path)
        servers.append(server)
        return server.start(timeout=timeout)

    yield start
    for server in servers:
        server.stop()
