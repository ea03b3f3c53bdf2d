"""The kernel's image, audio and rerank routes, against the deterministic echo backend
(the real models are exercised by each plugin's end-to-end tests)."""

from __future__ import annotations

import base64
import io
import struct
import wave

import httpx
import openai
import pytest
import yaml

from localai.testing.server import LocalAIServer, echo_backend_script

MODELS = {"echo-img": ["image"], "echo-stt": ["transcript"], "echo-tts": ["tts"], "echo-rerank": ["rerank"],
          "echo-chat": ["chat"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    script = echo_backend_script(root / "echo")
    models = root / "models"
    models.mkdir()
    for name, usecases in MODELS.items():
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, "known_usecases": usecases}))
    with LocalAIServer(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{script}"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_models_list_carries_usecases(client, server):
    models = httpx.get(server.url("/v1/models")).json()["data"]
    listed = {m["id"]: m["usecases"] for m in models if m["id"] in MODELS}
    assert listed == {k: sorted(v) for k, v in MODELS.items()}


def test_image_b64_url_and_n(client):
    result = client.images.generate(model="echo-img", prompt="a cat", size="64x32", response_format="b64_json", n=2)
    images = [base64.b64decode(d.b64_json) for d in result.data]
    assert [png_size(i) for i in images] == [(64, 32), (64, 32)]
    assert images[0] != images[1]  # a different seed per image
    seeded = client.images.generate(model="echo-img", prompt="a cat", size="16x16", response_format="url",
                                    extra_body={"seed": 5})
    fetched = httpx.get(seeded.data[0].url)
    assert fetched.status_code == 200 and png_size(fetched.content) == (16, 16)


@pytest.mark.parametrize("body,field", [
    ({"prompt": "x", "size": "5000x5000"}, "size"),
    ({"prompt": "x", "size": "abc"}, "size"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "| only negative"}, "prompt"),
    ({"prompt": "x", "response_format": "gif"}, "response_format"),
    ({"prompt": "x", "n": 50}, "n"),
])
def test_image_bad_input(server, body, field):
    response = httpx.post(server.url("/v1/images/generations"), json={"model": "echo-img", **body})
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]


def test_transcription_formats(client):
    audio = ("clip.wav", b"RIFF" + b"\0" * 96, "audio/wav")
    assert client.audio.transcriptions.create(model="echo-stt", file=audio).text == "echo transcript of 100 bytes"
    text = client.audio.transcriptions.create(model="echo-stt", file=audio, response_format="text")
    assert text.strip() == "echo transcript of 100 bytes"
    srt = client.audio.transcriptions.create(model="echo-stt", file=audio, response_format="srt")
    assert srt.strip().splitlines()[:3] == ["1", "00:00:00,000 --> 00:00:01,500", "echo transcript"]
    vtt = client.audio.transcriptions.create(model="echo-stt", file=audio, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\necho transcript")
    verbose = client.audio.transcriptions.create(model="echo-stt", file=audio, response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    assert verbose.duration == 3.0 and verbose.language == "en"
    assert [(s.start, s.end) for s in verbose.segments] == [(0.0, 1.5), (1.5, 3.0)]
    assert verbose.words[0].word == "echo" and verbose.words[0].end == 0.5


def test_transcription_bad_input(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="echo-stt", file=("x.txt", b"NOTAUDIO at all", "text/plain"))
    assert "cannot decode audio" in info.value.body["message"]
    assert httpx.post(server.url("/v1/audio/transcriptions"), data={"model": "echo-stt"}).status_code == 400
    empty = httpx.post(server.url("/v1/audio/transcriptions"), data={"model": "echo-stt"},
                       files={"file": ("a.wav", b"", "audio/wav")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    bad_format = httpx.post(server.url("/v1/audio/transcriptions"), data={"model": "echo-stt",
                            "response_format": "xml"}, files={"file": ("a.wav", b"RIFF", "audio/wav")})
    assert bad_format.status_code == 400
    # the backend keeps serving
    assert client.audio.transcriptions.create(model="echo-stt", file=("a.wav", b"RIFF", "audio/wav")).text


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def test_speech_formats_and_speed(client, server):
    text = "Hello from LocalAI."
    wav = client.audio.speech.create(model="echo-tts", voice="alloy", input=text, response_format="wav").content
    assert wav_seconds(wav) == pytest.approx(0.05 * len(text), rel=0.01)
    fast = client.audio.speech.create(model="echo-tts", voice="alloy", input=text, response_format="wav", speed=2.0)
    assert wav_seconds(fast.content) == pytest.approx(wav_seconds(wav) / 2, rel=0.01)
    pcm = client.audio.speech.create(model="echo-tts", voice="alloy", input=text, response_format="pcm").content
    assert len(pcm) == int(16000 * 0.05 * len(text)) * 2
    mp3 = client.audio.speech.create(model="echo-tts", voice="alloy", input=text, response_format="mp3").content
    assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
    flac = client.audio.speech.create(model="echo-tts", voice="alloy", input=text, response_format="flac").content
    assert flac[:4] == b"fLaC"
    tts = httpx.post(server.url("/tts"), json={"model": "echo-tts", "input": text})
    assert tts.status_code == 200 and tts.headers["content-type"] == "audio/wav" and wav_seconds(tts.content) > 0


@pytest.mark.parametrize("body", [{"input": ""}, {"input": "   "}, {"input": "x", "speed": 10},
                                  {"input": "x", "response_format": "ogg-vorbis"}])
def test_speech_bad_input(server, body):
    response = httpx.post(server.url("/v1/audio/speech"), json={"model": "echo-tts", **body})
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_rerank_jina_shape(server):
    documents = ["the weather is sunny", "cats purr when happy", "a happy cat purrs loudly"]
    body = httpx.post(server.url("/v1/rerank"), json={"model": "echo-rerank", "query": "happy cat purrs",
                                                      "documents": documents}).json()
    assert [r["index"] for r in body["results"]] == [2, 1, 0]
    assert body["results"][0]["document"] == {"text": documents[2]}
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == "echo-rerank" and body["usage"]["total_tokens"] > 0
    top = httpx.post(server.url("/rerank"), json={"model": "echo-rerank", "query": "cat", "documents": documents,
                                                  "top_n": 1}).json()
    assert len(top["results"]) == 1
    empty = httpx.post(server.url("/v1/rerank"), json={"model": "echo-rerank", "query": "x", "documents": []})
    assert empty.status_code == 400


def test_model_that_cannot_do_the_job_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo-tts", messages=[{"role": "user", "content": "hi"}])
    assert "does not support chat" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="echo-chat", prompt="a cat")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="echo-stt", voice="alloy", input="hi")
