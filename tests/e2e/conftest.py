"""One real ``local-ai run`` per test module, serving the default SmolLM2 with the LLM plugin
this tox env installed (xllamacpp or llama-cpp-python), and an openai SDK client for it."""

from __future__ import annotations

import openai
import pytest

from localai.testing.server import LocalAIServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    with LocalAIServer(root / "models", args=["--threads", "2"], cwd=root,
                       env={"LOCALAI_DATA_PATH": str(root / "data")}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="not-needed", max_retries=0, timeout=180)
