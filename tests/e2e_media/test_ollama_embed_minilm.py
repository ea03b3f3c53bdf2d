"""Ollama's ``/api/embed`` and ``/api/embeddings`` on the real all-MiniLM-L6-v2 model (the
sentence-transformers plugin's default), through the official ``ollama`` client, unchanged."""

from __future__ import annotations

import math

import ollama
import pytest

from localai.testing.server import LocalAIServer

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with LocalAIServer(tmp_path_factory.mktemp("models"), args=["--threads", "2"]) as server:
        yield ollama.Client(host=server.base_url, timeout=300)


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embed_with_minilm(client):
    assert f"{MODEL}:latest" in [m.model for m in client.list().models]
    texts = ["A man is playing a guitar.", "Someone strums a guitar.", "The stock market fell today."]
    result = client.embed(model=f"{MODEL}:latest", input=texts)
    assert len(result.embeddings) == 3 and all(len(v) == 384 for v in result.embeddings)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in result.embeddings)
    a, b, c = result.embeddings
    assert cosine(a, b) > cosine(a, c) + 0.2
    assert result.prompt_eval_count > 0
    single = client.embeddings(model=MODEL, prompt=texts[0]).embedding
    assert len(single) == 384 and cosine(single, a) > 0.999
    assert "embedding" in client.show(MODEL).capabilities
