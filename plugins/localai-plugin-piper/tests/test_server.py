"""The piper backend over real gRPC with the real joe voice."""

from __future__ import annotations

import json
import os
import threading
import wave

import grpc
import pytest

from localai.proto import backend_pb2 as pb

SENTENCE = "Hello from LocalAI. The quick brown fox jumps over the lazy dog."


def wav_info(path) -> tuple[int, int, int, float]:
    """(rate, channels, sample width, seconds) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes() / w.getframerate()


def tts(stub, tmp_path, text=SENTENCE, name="out.wav", **kw):
    dst = tmp_path / name
    res = stub.TTS(pb.TTSRequest(text=text, model="tts-1", dst=str(dst), **kw), timeout=60)
    return res, dst


def test_calls_before_load_fail_cleanly(backend, tmp_path):
    with pytest.raises(grpc.RpcError) as err:
        tts(backend, tmp_path)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_load_missing_file_is_a_clear_failure(backend):
    res = backend.LoadModel(pb.ModelOptions(Model="nope.onnx", ModelPath="/nonexistent"))
    assert not res.success
    assert "not found" in res.message and "/nonexistent/nope.onnx" in res.message


def test_load_missing_config_is_a_clear_failure(backend, tmp_path):
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"x")
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(model)))
    assert not res.success and "config not found" in res.message and "voice.onnx.json" in res.message


def test_load_corrupt_file_is_a_clear_failure(backend, tmp_path, voice_path):
    model = tmp_path / "bad.onnx"
    model.write_bytes(b"not an onnx model" * 100)
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(model), Options=[f"config:{voice_path}.json"]))
    assert not res.success and "failed to load" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"


def test_free_unloads(backend, voice_path, tmp_path):
    res = backend.LoadModel(pb.ModelOptions(Model="m", ModelFile=voice_path, Threads=1))
    assert res.success and "22050 Hz" in res.message
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        tts(backend, tmp_path)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_tts_writes_a_wav(loaded, tmp_path):
    res, dst = tts(loaded, tmp_path, voice="alloy")
    assert res.success
    rate, channels, width, seconds = wav_info(dst)
    assert (rate, channels, width) == (22050, 1, 2)
    assert 1.0 < seconds < 10.0
    info = json.loads(res.message)
    assert info["sample_rate"] == 22050 and info["sentences"] == 2
    assert abs(info["duration"] - seconds) < 0.01
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temp file left behind


def test_speed_two_is_about_half_as_long(loaded, tmp_path):
    _, normal = tts(loaded, tmp_path, name="normal.wav")
    _, fast = tts(loaded, tmp_path, name="fast.wav", params={"speed": "2.0"})
    _, slow = tts(loaded, tmp_path, name="slow.wav", params={"speed": "0.5"})
    t_normal, t_fast, t_slow = (wav_info(p)[3] for p in (normal, fast, slow))
    assert t_fast < 0.7 * t_normal
    assert t_slow > 1.5 * t_normal


def test_duration_grows_with_text(loaded, tmp_path):
    _, short = tts(loaded, tmp_path, text="Hello.", name="short.wav")
    _, long = tts(loaded, tmp_path, text=SENTENCE * 3, name="long.wav")
    assert wav_info(long)[3] > 4 * wav_info(short)[3]


def test_stream_sends_header_then_pcm(loaded, tmp_path):
    replies = list(loaded.TTSStream(pb.TTSRequest(text=SENTENCE, model="tts-1"), timeout=60))
    header = json.loads(replies[0].message)
    assert header == {"sample_rate": 22050, "channels": 1, "sample_width": 2}
    chunks = [r.audio for r in replies[1:]]
    assert len(chunks) == 2 and all(chunks)  # one chunk per sentence
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0
    seconds = len(pcm) / 2 / 22050
    _, dst = tts(loaded, tmp_path)
    assert 1.0 < seconds < 10.0
    assert abs(seconds - wav_info(dst)[3]) < 0.25 * seconds  # same text, similar length


@pytest.mark.parametrize(
    "text, needle",
    [("", "empty"), ("   \n\t", "empty"), ("...", "nothing to speak"), ("word " * 101, "too long for this voice (505 characters, limit 500)")],
)
def test_bad_text_is_invalid_and_backend_keeps_serving(loaded, tmp_path, text, needle):
    for call in ("TTS", "TTSStream"):
        with pytest.raises(grpc.RpcError) as err:
            if call == "TTS":
                tts(loaded, tmp_path, text=text)
            else:
                list(loaded.TTSStream(pb.TTSRequest(text=text)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()
    assert not os.listdir(tmp_path)  # no partial file
    res, dst = tts(loaded, tmp_path, text="Still here.")
    assert res.success and wav_info(dst)[3] > 0.3


@pytest.mark.parametrize("speed", ["abc", "0.1", "5", "-1"])
def test_bad_speed_is_invalid(loaded, tmp_path, speed):
    with pytest.raises(grpc.RpcError) as err:
        tts(loaded, tmp_path, params={"speed": speed})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "speed" in err.value.details()


def test_missing_dst_folder_is_invalid(loaded, tmp_path):
    with pytest.raises(grpc.RpcError) as err:
        loaded.TTS(pb.TTSRequest(text=SENTENCE, dst=str(tmp_path / "no" / "out.wav")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_identity(loaded, tmp_path):
    with pytest.raises(grpc.RpcError) as err:
        tts(loaded, tmp_path, ModelIdentity="other-model")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model identity mismatch" in err.value.details()
    assert tts(loaded, tmp_path, ModelIdentity="tts-1")[0].success


def test_concurrent_requests_are_all_served(loaded, tmp_path):
    results: dict[int, float] = {}

    def one(i: int) -> None:
        _, dst = tts(loaded, tmp_path, text=f"Request number {i}. {SENTENCE}", name=f"c{i}.wav")
        results[i] = wav_info(dst)[3]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(s > 1.0 for s in results.values())
    st = loaded.Status(pb.HealthMessage())
    assert st.state == pb.StatusResponse.READY and st.memory.total > 0


def test_cancelled_stream_releases_the_voice(loaded, tmp_path):
    stream = loaded.TTSStream(pb.TTSRequest(text=SENTENCE * 7), timeout=60)
    assert json.loads(next(stream).message)["sample_rate"] == 22050
    assert next(stream).audio
    stream.cancel()
    res, dst = tts(loaded, tmp_path, text="After the cancel.")
    assert res.success and wav_info(dst)[3] > 0.5


def test_voice_selects_a_speaker_of_multi_speaker_voices():
    from types import SimpleNamespace

    from localai_plugin_piper.server import BadRequest, PiperServicer

    servicer = PiperServicer()
    multi = SimpleNamespace(config=SimpleNamespace(num_speakers=3, speaker_id_map={"amy": 0, "bob": 2}))
    single = SimpleNamespace(config=SimpleNamespace(num_speakers=1, speaker_id_map={}))
    assert servicer._speaker(multi, "bob") == 2
    assert servicer._speaker(multi, "1") == 1
    assert servicer._speaker(multi, "") is None and servicer._speaker(multi, "alloy") is None
    with pytest.raises(BadRequest, match="unknown voice 'carol'.*amy, bob"):
        servicer._speaker(multi, "carol")
    with pytest.raises(BadRequest):
        servicer._speaker(multi, "3")
    assert servicer._speaker(single, "anything") is None
