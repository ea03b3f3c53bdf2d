"""End to end: ``local-ai run`` with the default ``smollm2`` on the xllamacpp backend, driven
by the official ``openai`` SDK: concurrent users are served together."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from localai.testing.server import LocalAIServer

PROMPT = "Write a long, detailed essay about the history of the Roman Empire."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    with LocalAIServer(models, args=["--threads", "2"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_default_model_runs_on_the_xllamacpp_backend(server, client):
    assert "smollm2" in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    assert "paris" in reply.choices[0].message.content.lower()
    assert reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens > 0
    loaded = {m["id"]: m for m in httpx.get(server.url("/system")).json()["loaded_models"]}
    assert loaded["smollm2"]["backend"] == "llama-cpp"


def test_four_sdk_streams_overlap_and_complete(client):
    n, results, errors = 4, [], []
    barrier = threading.Barrier(n)

    def one() -> None:
        try:
            barrier.wait()
            first, pieces, reason = 0.0, 0, None
            stream = client.chat.completions.create(
                model="smollm2", stream=True, max_tokens=48, temperature=0,
                stream_options={"include_usage": True}, messages=[{"role": "user", "content": PROMPT}])
            usage = None
            for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    first = first or time.monotonic()
                if chunk.choices and chunk.choices[0].finish_reason:
                    reason = chunk.choices[0].finish_reason
            results.append((first, time.monotonic(), pieces, reason, usage))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == n
    for _, _, pieces, reason, usage in results:
        assert reason == "length" and usage.completion_tokens == 48 and pieces >= 40
    # decoded together: every user saw a first token before anyone's stream ended
    assert max(r[0] for r in results) < min(r[1] for r in results)


def test_completions_and_embeddings(client):
    text = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert text.choices[0].text.strip() and text.usage.completion_tokens == 8
    vectors = client.embeddings.create(model="smollm2", input=["a small cat", "a little kitten"]).data
    assert len(vectors) == 2 and len(vectors[0].embedding) == 576
