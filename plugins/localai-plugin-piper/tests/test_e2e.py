"""End to end: a real ``local-ai run`` serving ``tts-1`` through this plugin, driven by the
official ``openai`` SDK (the kernel's ``/v1/audio/speech`` and ``/tts`` routes)."""

from __future__ import annotations

import importlib.util
import io
import wave

import httpx
import openai
import pytest

from localai.testing.server import LocalAIServer

MODEL = "tts-1"
TEXT = "Hello from LocalAI."
PCM_BYTES_PER_SECOND = 22050 * 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, voice_path):
    with LocalAIServer(tmp_path_factory.mktemp("models"), args=["--threads", "2"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


def speech(client, text=TEXT, **kwargs) -> bytes:
    kwargs.setdefault("response_format", "wav")
    return client.audio.speech.create(model=MODEL, voice="alloy", input=text, **kwargs).content


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
        return w.getnframes() / w.getframerate()


def test_models_list_has_tts_1(client):
    assert MODEL in [m.id for m in client.models.list().data]


def test_speech_wav(client):
    data = speech(client)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert 0.8 < wav_seconds(data) < 10.0


def test_speech_pcm_is_headerless(client):
    pcm = speech(client, response_format="pcm")
    assert pcm[:4] != b"RIFF" and len(pcm) % 2 == 0
    assert 0.8 < len(pcm) / PCM_BYTES_PER_SECOND < 10.0


@pytest.mark.parametrize(
    "fmt, module, magic",
    [("flac", "soundfile", (b"fLaC",)), ("mp3", "lameenc", (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"))],
)
def test_speech_flac_mp3(client, fmt, module, magic):
    if importlib.util.find_spec(module) is None:  # the server runs in this interpreter
        with pytest.raises(openai.BadRequestError, match=module):
            speech(client, response_format=fmt)
        return
    data = speech(client, response_format=fmt)
    assert data.startswith(magic), data[:8]
    assert len(data) > 1000


def test_speed_two_is_shorter(client):
    normal = wav_seconds(speech(client, text="The quick brown fox jumps over the lazy dog."))
    fast = wav_seconds(speech(client, text="The quick brown fox jumps over the lazy dog.", speed=2.0))
    assert fast < 0.7 * normal


def test_duration_grows_with_text(client):
    short = wav_seconds(speech(client, text="Hi."))
    long = wav_seconds(speech(client, text="The quick brown fox jumps over the lazy dog. " * 4))
    assert long > 4 * short


def test_localai_tts_route_returns_wav(server):
    r = httpx.post(server.url("/tts"), json={"model": MODEL, "input": TEXT}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/wav")
    assert 0.8 < wav_seconds(r.content) < 10.0


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_input_is_bad_request(client, text):
    with pytest.raises(openai.BadRequestError):
        speech(client, text=text)
    assert wav_seconds(speech(client)) > 0.8  # still serving


def test_too_long_input_is_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="too long for this voice"):
        speech(client, text="word " * 1000)  # 5000 characters: over the backend's 4096 default
