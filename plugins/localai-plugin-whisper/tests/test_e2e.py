"""End to end: a real ``local-ai run`` serving ``whisper-1`` through this plugin, driven by
the official ``openai`` SDK (needs the kernel's ``/v1/audio/transcriptions`` route)."""

from __future__ import annotations

import re
import subprocess

import av
import httpx
import openai
import pytest

from localai.testing.server import LocalAIServer

MODEL = "whisper-1"
SRT_BLOCK = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+", re.M)


def make_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    with LocalAIServer(tmp_path_factory.mktemp("models"), args=["--threads", "2"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return make_client(server)


def transcribe(client, path, **kwargs):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model=MODEL, file=f, **kwargs)


def av_transcode(src: str, dst: str, codec: str, rate: int) -> None:
    """Re-encode ``src`` into ``dst`` (container from the suffix) with PyAV."""
    with av.open(src) as inp, av.open(dst, "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def test_models_list_has_whisper(client):
    assert MODEL in [m.id for m in client.models.list().data]


def test_json(client, fox_wav, has_words):
    res = transcribe(client, fox_wav)
    assert has_words(res.text), res.text


def test_text_srt_vtt(client, fox_wav, has_words):
    text = transcribe(client, fox_wav, response_format="text")
    assert isinstance(text, str) and has_words(text)
    srt = transcribe(client, fox_wav, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and SRT_BLOCK.search(srt) and has_words(srt)
    vtt = transcribe(client, fox_wav, response_format="vtt")
    assert vtt.startswith("WEBVTT") and re.search(r"00:00:00\.000 --> 00:00:0\d\.\d{3}\n", vtt)
    assert has_words(vtt)


def test_verbose_json_with_words(client, fox_wav, has_words):
    res = transcribe(client, fox_wav, response_format="verbose_json",
                     timestamp_granularities=["word", "segment"])
    assert has_words(res.text) and res.language in ("en", "english")
    assert 2.0 < res.duration < 4.0
    assert res.segments
    last = 0.0
    for seg in res.segments:
        assert last <= seg.start < seg.end <= res.duration + 0.1  # seconds, not nanoseconds
        last = seg.end
    assert res.words and has_words(" ".join(w.word for w in res.words))
    assert all(0 <= w.start <= w.end <= res.duration + 0.1 for w in res.words)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "webm"])
def test_other_containers(client, fox_wav, has_words, tmp_path, fmt):
    out = str(tmp_path / f"fox.{fmt}")
    if fmt in ("flac", "ogg"):
        subprocess.run(["sox", fox_wav, out], check=True)
    else:
        av_transcode(fox_wav, out, "libmp3lame" if fmt == "mp3" else "libopus",
                     22050 if fmt == "mp3" else 48000)
    assert has_words(transcribe(client, out).text)


def test_not_audio_is_400_and_server_keeps_serving(localai_server, tmp_path, model_dir, fox_wav, has_words):
    server = localai_server(tmp_path / "models", args=["--threads", "2"])
    client = make_client(server)
    bad = tmp_path / "notes.mp3"
    bad.write_text("definitely not audio\n" * 40)
    with pytest.raises(openai.BadRequestError) as err:
        transcribe(client, bad)
    assert "cannot decode audio" in str(err.value)
    with open(fox_wav, "rb") as f:  # tiny.en cannot translate
        r = httpx.post(server.url("/v1/audio/translations"), data={"model": MODEL},
                       files={"file": ("fox.wav", f, "audio/wav")}, timeout=120)
    assert r.status_code == 400 and "English-only" in r.json()["error"]["message"]
    assert has_words(transcribe(client, fox_wav).text)
