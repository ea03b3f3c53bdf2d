"""The sentence-transformers backend over real gRPC with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import math
import threading

import grpc
import pytest

from localai.proto import backend_pb2 as pb

QUERY = "What is the capital of France?"
DOCS = [
    "The Eiffel Tower was finished in 1889.",
    "Bananas are rich in potassium.",
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply today.",
]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embed(stub, text, **kwargs):
    return stub.Embedding(pb.PredictOptions(Prompt=text, **kwargs), timeout=60)


def test_calls_before_load_fail_cleanly(backend):
    with pytest.raises(grpc.RpcError) as err:
        embed(backend, "hi")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        backend.Rerank(pb.RerankRequest(query="q", documents=["d"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_load_missing_dir_is_a_clear_failure(backend):
    res = backend.LoadModel(pb.ModelOptions(Model="nope", ModelPath="/nonexistent", ModelFile="/nonexistent/nope"))
    assert not res.success and "not found" in res.message and "/nonexistent/nope" in res.message


def test_load_bad_dir_is_a_clean_failure(backend, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"not a model" * 100)
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tmp_path)), timeout=120)
    assert not res.success and "failed to load" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_normalize_option_and_free(backend, model_dir):
    opts = pb.ModelOptions(Model="raw", ModelFile=model_dir, Threads=2, Options=["normalize:false"])
    assert backend.LoadModel(opts, timeout=120).success
    vec = embed(backend, "The cat sits on the mat.").embeddings
    assert abs(math.sqrt(sum(x * x for x in vec)) - 1.0) > 0.01
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        embed(backend, "x")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cross_encoder_type(backend, model_dir):
    """``Type: CrossEncoder`` loads a CrossEncoder (MiniLM has no trained head: shape only)."""
    opts = pb.ModelOptions(Model="ce", ModelFile=model_dir, Threads=2, Type="CrossEncoder")
    res = backend.LoadModel(opts, timeout=120)
    assert res.success and "CrossEncoder" in res.message
    out = backend.Rerank(pb.RerankRequest(query=QUERY, documents=DOCS), timeout=60)
    scores = [r.relevance_score for r in out.results]
    assert sorted(r.index for r in out.results) == [0, 1, 2, 3]
    assert scores == sorted(scores, reverse=True) and out.usage.prompt_tokens > 0
    with pytest.raises(grpc.RpcError) as err:
        embed(backend, "x")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert backend.Free(pb.HealthMessage()).success


def test_embedding_shape_norm_and_determinism(loaded):
    res = embed(loaded, "The cat sits on the mat.")
    assert res.dim == len(res.embeddings) == 384
    assert res.tokens == 1 and res.layout == pb.EMBEDDING_LAYOUT_FINAL
    assert res.prompt_tokens == 9  # [CLS] the cat sits on the mat . [SEP]
    assert math.isclose(math.sqrt(sum(x * x for x in res.embeddings)), 1.0, abs_tol=1e-4)
    assert list(embed(loaded, "The cat sits on the mat.").embeddings) == list(res.embeddings)


def test_related_sentences_are_closer(loaded):
    a = embed(loaded, "The cat sits on the mat.").embeddings
    similar = cosine(a, embed(loaded, "A feline rests on a rug.").embeddings)
    unrelated = cosine(a, embed(loaded, "Stock markets fell sharply today.").embeddings)
    assert similar > unrelated + 0.2


def test_embedding_tokens_match_prompt(loaded):
    text = "Hello world, how are you?"
    toks = loaded.TokenizeString(pb.PredictOptions(Prompt=text))
    assert toks.length == len(toks.tokens) == 7  # hello world , how are you ?
    by_tokens = embed(loaded, "", EmbeddingTokens=list(toks.tokens)).embeddings
    assert cosine(by_tokens, embed(loaded, text).embeddings) > 0.999
    with pytest.raises(grpc.RpcError) as err:
        embed(loaded, "", EmbeddingTokens=[10**7])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rerank_orders_by_relevance(loaded):
    out = loaded.Rerank(pb.RerankRequest(query=QUERY, documents=DOCS), timeout=60)
    assert len(out.results) == len(DOCS)
    assert out.results[0].index == 2
    for r in out.results:
        assert r.text == DOCS[r.index] and -1.0 <= r.relevance_score <= 1.0
    scores = [r.relevance_score for r in out.results]
    assert scores == sorted(scores, reverse=True)
    assert out.usage.prompt_tokens == out.usage.total_tokens > 20


def test_rerank_top_n(loaded):
    full = loaded.Rerank(pb.RerankRequest(query=QUERY, documents=DOCS)).results
    top = loaded.Rerank(pb.RerankRequest(query=QUERY, documents=DOCS, top_n=2)).results
    assert [r.index for r in top] == [r.index for r in full[:2]]
    assert len(loaded.Rerank(pb.RerankRequest(query=QUERY, documents=DOCS, top_n=10)).results) == 4


def test_rerank_bad_requests_keep_the_backend_serving(loaded):
    for req in (pb.RerankRequest(query="", documents=DOCS), pb.RerankRequest(query=QUERY)):
        with pytest.raises(grpc.RpcError) as err:
            loaded.Rerank(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert loaded.Health(pb.HealthMessage()).message == b"OK"
    assert embed(loaded, "still here").dim == 384


def test_model_identity(loaded):
    with pytest.raises(grpc.RpcError) as err:
        embed(loaded, "x", ModelIdentity="other-model")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model identity mismatch" in err.value.details()
    assert embed(loaded, "x", ModelIdentity="all-minilm-l6-v2").dim == 384


def test_status(loaded):
    st = loaded.Status(pb.HealthMessage())
    assert st.state == pb.StatusResponse.READY and st.memory.total > 0


def test_concurrent_requests_are_batched_and_match(loaded):
    texts = [f"sentence number {i}" for i in range(8)]
    expected = [list(embed(loaded, t).embeddings) for t in texts]
    got: dict[int, list[float]] = {}

    def run(i):
        got[i] = list(embed(loaded, texts[i]).embeddings)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # concurrent calls are encoded together: the same vectors, up to float rounding of batching
    for i in range(8):
        assert got[i] == pytest.approx(expected[i], abs=1e-5)
