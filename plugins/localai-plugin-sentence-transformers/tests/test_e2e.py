"""End to end: a real ``local-ai run`` serving all-MiniLM-L6-v2 through this plugin,
driven by the official ``openai`` SDK (embeddings) and httpx (``/v1/rerank``)."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

MODEL = "all-minilm-l6-v2"
QUERY = "What is the capital of France?"
DOCS = [
    "The Eiffel Tower was finished in 1889.",
    "Bananas are rich in potassium.",
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply today.",
]
ENV = {"LOCALAI_THREADS": "2"}


@pytest.fixture
def server(localai_server, tmp_path, model_dir):
    return localai_server(tmp_path / "models", env=ENV, timeout=120)


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_through_the_openai_sdk(server):
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0, timeout=120)
    assert MODEL in [m.id for m in client.models.list().data]
    texts = ["The cat sits on the mat.", "A feline rests on a rug.", "Stock markets fell sharply today."]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert floats.model == MODEL and [d.index for d in floats.data] == [0, 1, 2]
    vecs = [d.embedding for d in floats.data]
    assert all(len(v) == 384 and math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4) for v in vecs)
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2]) + 0.2
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    # the SDK's default asks for base64 and decodes it back to floats
    default = client.embeddings.create(model=MODEL, input=texts)
    for a, b in zip(vecs, (d.embedding for d in default.data)):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6
    batch = client.embeddings.create(model=MODEL, input=[f"sentence number {i}" for i in range(32)])
    assert [d.index for d in batch.data] == list(range(32))
    assert all(len(d.embedding) == 384 for d in batch.data)
    assert batch.usage.prompt_tokens >= 32 * 5


def test_rerank_in_the_jina_shape(server):
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        body = http.post("/v1/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS}).json()
        assert body["model"] == MODEL
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] > 0
        results = body["results"]
        assert len(results) == len(DOCS) and results[0]["index"] == 2
        assert all(r["document"]["text"] == DOCS[r["index"]] for r in results)
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)

        top = http.post("/v1/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS, "top_n": 2})
        assert [r["index"] for r in top.json()["results"]] == [r["index"] for r in results[:2]]

        for bad in ({"documents": []}, {"query": ""}, {"query": "   "}):  # the last one: by the backend
            r = http.post("/v1/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS, **bad})
            assert r.status_code == 400
            error = r.json()["error"]
            assert error["message"] and error["type"] == "invalid_request_error"
        # the backend keeps serving after bad requests
        assert http.post("/v1/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS[:1]}).status_code == 200
