"""Every backend type at once, the way the README's run command sets them up: the default
models of the piper, whisper and sentence-transformers plugins in one real server."""

from __future__ import annotations

import math

import openai
import pytest

from localai.testing.server import LocalAIServer


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with LocalAIServer(tmp_path_factory.mktemp("models"), args=["--threads", "2"]) as server:
        yield openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)


def test_default_models_of_every_type_are_listed(client):
    models = {m.id for m in client.models.list().data}
    assert {"tts-1", "whisper-1", "all-minilm-l6-v2"} <= models


def test_piper_speech_transcribed_by_whisper(client):
    sentence = "The quick brown fox jumps over the lazy dog."
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=sentence, response_format="wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio.content, "audio/wav")).text
    words = {w.strip(".,!?").lower() for w in text.split()}
    assert {"quick", "brown", "fox", "lazy", "dog"} <= words, text


def test_embeddings_of_related_sentences_are_closer(client):
    texts = ["A man is playing a guitar.", "Someone strums a guitar.", "The stock market fell today."]
    vectors = [d.embedding for d in client.embeddings.create(model="all-minilm-l6-v2", input=texts).data]

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
