"""An HTTP backend in front of a real OpenAI-compatible server (a second ``local-ai run``
serving SmolLM2), driven with the official openai SDK."""

from __future__ import annotations

import openai
import pytest
import yaml

from localai.testing.server import LocalAIServer


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("http-backend")
    with LocalAIServer(root / "upstream", args=["--threads", "2"]) as upstream:
        (root / "front").mkdir()
        (root / "front" / "remote.yaml").write_text(yaml.safe_dump({
            "name": "remote-smollm2", "backend": "http",
            "proxy": {"upstream_url": upstream.base_url + "/v1", "upstream_model": "smollm2"}}))
        with LocalAIServer(root / "front") as front:
            yield openai.OpenAI(base_url=front.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_chat_non_stream_and_stream(client):
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    reply = client.chat.completions.create(model="remote-smollm2", messages=messages, temperature=0, max_tokens=8)
    assert "paris" in reply.choices[0].message.content.lower() and reply.model == "remote-smollm2"
    streamed = client.chat.completions.create(model="remote-smollm2", messages=messages, temperature=0,
                                              max_tokens=8, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == reply.choices[0].message.content


def test_embeddings(client):
    result = client.embeddings.create(model="remote-smollm2", input=["hello", "world"])
    assert [len(d.embedding) for d in result.data] == [576, 576]
