"""One real ``local-ai run`` for the dialect tests: the echo backend with deterministic tool calls
(``tool_backend.py``) serving ``echo`` and ``echo-slow`` (a pause between streamed words)."""

from __future__ import annotations

import pytest

from localai.testing.server import LocalAIServer
from tests.dialects.helpers import dialect_models, tool_backend_env


@pytest.fixture(scope="session")
def dialect_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialects")
    dialect_models(root / "models")
    env = tool_backend_env(root)
    with LocalAIServer(root / "models", env=env, cwd=root) as srv:
        yield srv
