"""The faster-whisper backend over real gRPC with the real Whisper tiny.en model."""

from __future__ import annotations

import threading

import grpc
import pytest

from localai.proto import backend_pb2 as pb

NS = 1_000_000_000


def test_calls_before_load_fail_cleanly(backend, fox_wav):
    with pytest.raises(grpc.RpcError) as err:
        backend.AudioTranscription(pb.TranscriptRequest(dst=fox_wav))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_load_missing_dir_is_a_clear_failure(backend):
    res = backend.LoadModel(pb.ModelOptions(Model="m", ModelFile="/nonexistent/whisper-model"))
    assert not res.success
    assert "not found" in res.message and "/nonexistent/whisper-model" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"


def test_load_corrupt_dir_is_a_clear_failure(backend, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not a model" * 100)
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tmp_path)))
    assert not res.success and "failed to load" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"


def test_cuda_means_when_present(backend, model_dir, fox_wav, has_words):
    """The kernel asks for CUDA by default: without a GPU the model still loads, on the CPU."""
    import ctranslate2

    res = backend.LoadModel(pb.ModelOptions(Model="m", ModelFile=model_dir, Threads=1, CUDA=True))
    assert res.success, res.message
    if ctranslate2.get_cuda_device_count() == 0:
        assert has_words(backend.AudioTranscription(pb.TranscriptRequest(dst=fox_wav)).text)
    assert backend.Free(pb.HealthMessage()).success


def test_free_unloads(backend, model_dir, fox_wav):
    assert backend.LoadModel(pb.ModelOptions(Model="m", ModelFile=model_dir, Threads=1)).success
    st = backend.Status(pb.HealthMessage())
    assert st.state == pb.StatusResponse.READY and st.memory.total > 0
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        backend.AudioTranscription(pb.TranscriptRequest(dst=fox_wav))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_transcription(loaded, fox_wav, has_words):
    res = loaded.AudioTranscription(pb.TranscriptRequest(dst=fox_wav), timeout=120)
    assert has_words(res.text), res.text
    assert res.text == res.text.strip()
    assert res.language == "en" and 2.0 < res.duration < 4.0
    assert res.segments and res.segments[0].id == 0
    limit = int(res.duration * NS) + NS // 10
    last = -1
    for seg in res.segments:
        assert last <= seg.start < seg.end <= limit, (seg.start, seg.end, limit)
        assert seg.tokens and seg.text.strip() and not seg.words
        last = seg.end
    assert res.segments[-1].end > NS  # nanoseconds, not seconds
    assert "".join(s.text for s in res.segments).strip() == res.text


def test_word_timestamps(loaded, fox_wav, has_words):
    req = pb.TranscriptRequest(dst=fox_wav, language="en", timestamp_granularities=["word", "segment"])
    res = loaded.AudioTranscription(req, timeout=120)
    words = [w for s in res.segments for w in s.words]
    assert len(words) >= 7
    texts = " ".join(w.text for w in words).lower()
    assert has_words(texts), texts
    last = 0
    for w in words:
        assert w.text == w.text.strip()
        assert last <= w.start <= w.end <= int(res.duration * NS) + NS // 10
        last = w.start
    assert words[-1].end > NS


def test_prompt_and_temperature_are_accepted(loaded, fox_wav, has_words):
    req = pb.TranscriptRequest(dst=fox_wav, prompt="Quick brown fox.", temperature=0.2, threads=1)
    assert has_words(loaded.AudioTranscription(req, timeout=120).text)


def test_not_audio_is_invalid_argument_and_backend_survives(loaded, tmp_path, fox_wav, has_words):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio at all\n" * 50)
    with pytest.raises(grpc.RpcError) as err:
        loaded.AudioTranscription(pb.TranscriptRequest(dst=str(bad)), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode audio" in err.value.details()
    assert loaded.Health(pb.HealthMessage(), timeout=5).message == b"OK"
    assert has_words(loaded.AudioTranscription(pb.TranscriptRequest(dst=fox_wav), timeout=120).text)


def test_missing_audio_and_translate_are_invalid(loaded, fox_wav):
    for req, needle in (
        (pb.TranscriptRequest(dst="/nonexistent/a.wav"), "not found"),
        (pb.TranscriptRequest(), "no audio"),
        (pb.TranscriptRequest(dst=fox_wav, translate=True), "English-only"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            loaded.AudioTranscription(req, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()


def test_model_identity(loaded, fox_wav, has_words):
    with pytest.raises(grpc.RpcError) as err:
        loaded.AudioTranscription(pb.TranscriptRequest(dst=fox_wav, ModelIdentity="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    req = pb.TranscriptRequest(dst=fox_wav, ModelIdentity="whisper-1")
    assert has_words(loaded.AudioTranscription(req, timeout=120).text)


def test_concurrent_requests_are_queued(loaded, fox_wav):
    expected = loaded.AudioTranscription(pb.TranscriptRequest(dst=fox_wav), timeout=120).text
    got: list[str] = []

    def run():
        got.append(loaded.AudioTranscription(pb.TranscriptRequest(dst=fox_wav), timeout=120).text)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    assert loaded.Health(pb.HealthMessage(), timeout=5).message == b"OK"
    for t in threads:
        t.join(120)
    assert got == [expected] * 3
    assert loaded.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
