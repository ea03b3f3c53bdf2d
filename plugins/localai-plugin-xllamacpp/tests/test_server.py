"""The xllamacpp backend over real gRPC with the real SmolLM2 GGUF."""

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


def chat(content: str, **kwargs) -> pb.PredictOptions:
    return pb.PredictOptions(UseTokenizerTemplate=True, Messages=[pb.Message(role="user", content=content)],
                             **kwargs)


def test_calls_before_load_fail_cleanly(backend):
    with pytest.raises(grpc.RpcError) as err:
        backend.Predict(pb.PredictOptions(Prompt="hi", Tokens=2))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
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


def test_bad_option_is_a_clear_failure(backend, gguf):
    res = backend.LoadModel(pb.ModelOptions(ModelFile=gguf, Options=["parallel:many"]))
    assert not res.success and "bad model options" in res.message


def test_load_reports_slots_and_free_unloads(backend, gguf):
    res = backend.LoadModel(pb.ModelOptions(Model="m", ModelFile=gguf, Threads=1, Options=["parallel:2"]))
    assert res.success and "2 parallel slots" in res.message
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        backend.Predict(pb.PredictOptions(Prompt="x"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_predict_respects_max_tokens(loaded):
    r = loaded.Predict(pb.PredictOptions(Prompt=LONG_PROMPT, Tokens=5, Temperature=0))
    assert r.message.strip()
    assert r.tokens == 5
    assert r.prompt_tokens > 5
    assert r.timing_token_generation > 0


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


def test_chat_uses_the_gguf_template(loaded):
    r = loaded.Predict(pb.PredictOptions(
        UseTokenizerTemplate=True, Tokens=16, Temperature=0,
        Messages=[pb.Message(role="system", content="You are a helpful assistant."),
                  pb.Message(role="user", content="What is the capital of France?")]))
    assert "paris" in r.message.decode().lower()
    assert "<|im_start|>" not in r.message.decode()
    streamed = b"".join(c.message for c in loaded.PredictStream(chat("What is the capital of France?",
                                                                        Tokens=16, Temperature=0)))
    assert streamed.strip()


def test_stop_words(loaded):
    opts = pb.PredictOptions(Prompt="Count: 1, 2, 3, 4, 5, 6,", Tokens=40, Temperature=0)
    free = loaded.Predict(opts).message.decode()
    assert " 9" in free
    opts.StopPrompts.append(" 9")
    cut = loaded.Predict(opts).message.decode()
    assert " 9" not in cut and free.startswith(cut)
    streamed = b"".join(c.message for c in loaded.PredictStream(opts)).decode()
    assert streamed == cut


def test_grammar_and_bad_grammar(loaded):
    r = loaded.Predict(pb.PredictOptions(Prompt="Is the sky blue? Answer:", Tokens=8, Temperature=0,
                                         Grammar='root ::= " yes" | " no"'))
    assert r.message.decode() in (" yes", " no")
    for call in (loaded.Predict, lambda o: list(loaded.PredictStream(o))):
        with pytest.raises(grpc.RpcError) as err:
            call(pb.PredictOptions(Prompt="x", Tokens=4, Grammar="root ::= ((("))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "grammar" in err.value.details()


def test_bad_messages_are_invalid_argument(loaded):
    with pytest.raises(grpc.RpcError) as err:
        loaded.Predict(chat("hi", Tools="{not json"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_embedding(loaded):
    def vec(text):
        return list(loaded.Embedding(pb.PredictOptions(Prompt=text)).embeddings)

    cat, kitten, tax = vec("a small cat"), vec("a little kitten"), vec("quarterly tax filing deadline")
    assert len(cat) == 576
    assert abs(math.sqrt(sum(x * x for x in cat)) - 1.0) < 1e-3
    assert cosine(cat, kitten) > cosine(cat, tax)
    with pytest.raises(grpc.RpcError) as err:
        loaded.Embedding(pb.PredictOptions(Prompt=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_embeddings_equal_single_ones(loaded):
    """llama.cpp pools wrongly when sequences share a batch; the backend must not let them."""
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."]
    single = [list(loaded.Embedding(pb.PredictOptions(Prompt=t)).embeddings) for t in texts]
    together: dict[int, list[float]] = {}
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> None:
        barrier.wait()
        together[i] = list(loaded.Embedding(pb.PredictOptions(Prompt=texts[i])).embeddings)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, vec in enumerate(single):
        assert max(abs(a - b) for a, b in zip(vec, together[i])) < 1e-4


def test_tokenize(loaded):
    r = loaded.TokenizeString(pb.PredictOptions(Prompt="hello world<|im_start|>"))
    assert r.length == len(r.tokens) == 3
    assert r.tokens[-1] == 1  # <|im_start|> parsed as one special token


def test_model_identity(loaded):
    with pytest.raises(grpc.RpcError) as err:
        loaded.Predict(pb.PredictOptions(Prompt="hi", Tokens=2, ModelIdentity="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert loaded.Predict(pb.PredictOptions(Prompt="hi", Tokens=2, ModelIdentity="smollm2")).tokens == 2


def test_cancel_stops_generation_and_frees_the_slot(loaded):
    call = loaded.PredictStream(pb.PredictOptions(Prompt=LONG_PROMPT, Tokens=1500, Temperature=0.7, IgnoreEOS=True))
    got = 0
    for _ in call:
        got += 1
        if got == 3:
            break
    call.cancel()
    # the engine stops that slot: the backend goes idle long before 1500 tokens could be made
    deadline = time.monotonic() + 5
    while loaded.Status(pb.HealthMessage()).state == pb.StatusResponse.BUSY and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loaded.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert loaded.Predict(pb.PredictOptions(Prompt="hi", Tokens=2)).tokens == 2


def test_health_answers_during_generation(loaded):
    done = threading.Event()

    def generate():
        loaded.Predict(pb.PredictOptions(Prompt=LONG_PROMPT, Tokens=200, IgnoreEOS=True))
        done.set()

    threading.Thread(target=generate).start()
    time.sleep(0.2)
    t = time.perf_counter()
    assert loaded.Health(pb.HealthMessage()).message == b"OK"
    assert time.perf_counter() - t < 0.5
    assert loaded.Status(pb.HealthMessage()).state == pb.StatusResponse.BUSY
    assert done.wait(60)
