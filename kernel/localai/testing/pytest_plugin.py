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


def pytest_addoption(parser):
    """Options of the backend conformance suite (``pytest --pyargs localai.testing.conformance``)."""
    group = parser.getgroup("localai-conformance", "LocalAI backend conformance suite")
    group.addoption("--backend-command", default=None,
                    help="command that starts the backend (shell-split; '--addr HOST:PORT' is appended); "
                         "env LOCALAI_BACKEND_COMMAND")
    group.addoption("--backend-model", default=None,
                    help="value for ModelOptions.Model/ModelFile at LoadModel; env LOCALAI_BACKEND_MODEL")
    group.addoption("--backend-caps", default=None,
                    help="comma list of capabilities to test (default health,load,predict,stream; also "
                         "embeddings,tokenize); env LOCALAI_BACKEND_CAPS or BACKEND_TEST_CAPS")
    group.addoption("--backend-timeout", type=float, default=None,
                    help="seconds the backend may take to answer Health 'OK' (default 40)")


def pytest_configure(config):
    config.addinivalue_line("markers", "localai_caps(*caps): conformance test of these backend capabilities")
    config.addinivalue_line("markers", "localai_probe_unimplemented: conformance probe of an unlisted RPC")


def pytest_collection_modifyitems(config, items):
    """Deselect conformance tests outside the ``--backend-caps`` selection (never skip them)."""
    marked = [item for item in items if item.get_closest_marker("localai_caps")
              or item.get_closest_marker("localai_probe_unimplemented")]
    if not marked:
        return
    from .conformance import is_unselected, selected_caps

    caps = selected_caps(config)
    dropped = [item for item in marked if is_unselected(item, caps)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(scope="session")
def oci_registry():
    """A local OCI registry (``docker-registry``) for the session; ``.host`` is ``127.0.0.1:PORT``."""
    from .registry import INSTALL_HINT, Registry

    try:
        registry = Registry().start()
    except RuntimeError as exc:
        pytest.fail(str(exc) if str(exc) == INSTALL_HINT else f"cannot start docker-registry: {exc}")
    yield registry
    registry.stop()


@pytest.fixture
def file_server(tmp_path: Path):
    """A :class:`~localai.testing.fileserver.FileServer` serving ``tmp_path / "www"`` (``.directory``)."""
    from .fileserver import FileServer

    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.close()
