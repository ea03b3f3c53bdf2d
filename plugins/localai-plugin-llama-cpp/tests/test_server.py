"""The llama-cpp backend over real gRPC with the real SmolLM2 GGUF."""

from __future__ import annotations

import math
import threading
import time

import grpc
import pytest

from localai.proto import backend_pb2 as pb

LONG_PROMPT = "Write a long, detailed essay about the history of the Roman Empire."


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_calls_before_load_fail_cleanly(backend):
    with pytest.raises(grpc.RpcError) as err:
        backend.Predict(pb.PredictOptions(Prompt="hi", Tokens=2))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not loaded" in err.value.details()
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_load_missing_file_is_a_clear_failure(backend):
    res = backend.LoadModel(pb.ModelOptions(Model="nope.gguf", ModelPath="/nonexistent"))
    assert not res.success
    assert "not found" in res.message and "/nonexistent/nope.gguf" in res.message


def test_load_corrupt_file_is_a_clear_failure(backend, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file" * 100)
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(bad)))
    assert not res.success and "failed to load" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"


def test_free_unloads(backend, gguf):
    assert backend.LoadModel(pb.ModelOptions(Model="m", ModelFile=gguf, Threads=1)).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        backend.Embedding(pb.PredictOptions(Prompt="x"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_predict_respects_max_tokens(loaded):
    r = loaded.Predict(pb.PredictOptions(Prompt=LONG_PROMPT, Tokens=5, Temperature=0))
    assert r.message.strip()
    assert r.tokens == 5
    assert r.prompt_tokens > 5


def test_stream_equals_predict(loaded):
    opts = pb.PredictOptions(Prompt="The capital of France is", Tokens=32, Temperature=0, Seed=42)
    full = loaded.Predict(opts)
    chunks = list(loaded.PredictStream(opts))
    assert len(chunks) > 5
    text = b"".join(c.message for c in chunks)
    assert text == full.message and text.strip()
    last = chunks[-1]
    assert last.message == b"" and last.tokens == full.tokens > 0
    assert last.prompt_tokens == full.prompt_tokens > 0
    assert last.timing_token_generation > 0


def test_chat_uses_the_gguf_template(loaded):
    r = loaded.Predict(
        pb.PredictOptions(
            UseTokenizerTemplate=True,
            Messages=[
                pb.Message(role="system", content="You are a helpful assistant."),
                pb.Message(role="user", content="What is the capital of France?"),
            ],
            Tokens=48,
            Temperature=0,
        )
    )
    text = r.message.decode()
    assert text.strip() and "<|im_" not in text
    assert "Paris" in text
    assert 0 < r.tokens < 48  # the model ends its turn (EOS) on its own


def test_stop_words(loaded):
    opts = pb.PredictOptions(Prompt="Count: 1, 2, 3, 4,", Tokens=40, Temperature=0)
    free = loaded.Predict(opts).message.decode()
    assert " 7," in free
    opts.StopPrompts.append(" 7")
    stopped = loaded.Predict(opts).message.decode()
    assert " 7" not in stopped and free.startswith(stopped) and " 6" in stopped
    streamed = b"".join(c.message for c in loaded.PredictStream(opts)).decode()
    assert streamed == stopped


def test_grammar(loaded):
    r = loaded.Predict(
        pb.PredictOptions(Prompt="Is the sky blue? Answer:", Tokens=8, Temperature=0,
                          Grammar='root ::= " yes" | " no"')
    )
    assert r.message.decode() in (" yes", " no")


def test_embedding(loaded):
    def emb(text):
        res = loaded.Embedding(pb.PredictOptions(Prompt=text))
        assert res.dim == len(res.embeddings) == 576
        assert res.layout == pb.EMBEDDING_LAYOUT_FINAL and res.prompt_tokens > 0
        return list(res.embeddings)

    a = emb("The cat sits on the mat.")
    assert a == emb("The cat sits on the mat.")
    similar = cosine(a, emb("A cat is sitting on a mat."))
    unrelated = cosine(a, emb("Quarterly tax filings are due in April."))
    assert similar > unrelated


def test_tokenize_and_status(loaded):
    res = loaded.TokenizeString(pb.PredictOptions(Prompt="Hello world, how are you?"))
    assert res.length == len(res.tokens) > 0
    st = loaded.Status(pb.HealthMessage())
    assert st.state == pb.StatusResponse.READY and st.memory.total > 0


def test_model_identity(loaded):
    with pytest.raises(grpc.RpcError) as err:
        loaded.TokenizeString(pb.PredictOptions(Prompt="x", ModelIdentity="other-model"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model identity mismatch" in err.value.details()
    assert loaded.TokenizeString(pb.PredictOptions(Prompt="x", ModelIdentity="smollm2")).length


def test_prompt_longer_than_context_is_invalid(loaded):
    with pytest.raises(grpc.RpcError) as err:
        loaded.Predict(pb.PredictOptions(Prompt="word " * 3000, Tokens=4))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_answers_during_generation_and_cancel_stops_it(loaded):
    stream = loaded.PredictStream(pb.PredictOptions(Prompt=LONG_PROMPT, Tokens=0, IgnoreEOS=True))
    chunks = [next(stream) for _ in range(3)]
    assert all(c.message for c in chunks)
    assert loaded.Health(pb.HealthMessage(), timeout=2).message == b"OK"
    assert loaded.Status(pb.HealthMessage(), timeout=2).state == pb.StatusResponse.BUSY
    stream.cancel()
    # the worker drops the cancelled stream at its next token, so this is served at once
    t0 = time.monotonic()
    r = loaded.Predict(pb.PredictOptions(Prompt="Hi", Tokens=2, Temperature=0), timeout=10)
    assert r.tokens == 2 and time.monotonic() - t0 < 3


def test_concurrent_requests_are_queued(loaded):
    opts = pb.PredictOptions(Prompt="The capital of France is", Tokens=16, Temperature=0)
    expected = loaded.Predict(opts).message
    got = []

    def run():
        got.append(b"".join(c.message for c in loaded.PredictStream(opts)))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == [expected] * 3
