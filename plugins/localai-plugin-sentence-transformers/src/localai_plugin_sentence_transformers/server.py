"""gRPC servicer of the sentence-transformers backend (embeddings, rerank, tokenize).

torch and sentence_transformers are imported by LoadModel (the import takes ~5 s), on the
one worker thread that runs every model call for the life of the process: calls are
serialised, FIFO, and ``torch.set_num_threads`` applies to the thread that computes.

The model is a ``SentenceTransformer`` (bi-encoder): Embedding returns its pooled vector
and Rerank scores documents by cosine similarity to the query. With ``Type: CrossEncoder``
(or the option ``cross_encoder:true``) a ``CrossEncoder`` is loaded instead: Rerank returns
its scores and Embedding is refused.

``ModelOptions.Options`` entries (``"key:value"``; a bare key means true):

- ``normalize:false``: return raw instead of L2-normalised embeddings (a trailing
  ``Normalize`` module of the model, as all-MiniLM-L6-v2 has, is dropped too)
- ``cross_encoder:true``: load the model as a CrossEncoder
- ``max_seq_length:N``: truncate inputs to N tokens (default: the model's own)
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from localai.backend_server import (BadRequest, NotLoaded, abort_for, check_identity, parse_options,
                                    status_response, truthy)
from localai.backend_worker import Worker
from localai.proto import backend_pb2, backend_pb2_grpc

# model files are local; never reach for the Hub (an explicit HF_HUB_OFFLINE=0 wins)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def model_path(req: Any) -> str:
    """ModelFile, else Model under ModelPath, else Model itself (a Hub id in the local cache)."""
    if req.ModelFile:
        return req.ModelFile
    if req.Model and req.ModelPath:
        joined = os.path.join(req.ModelPath, req.Model)
        if os.path.exists(joined):
            return joined
    return req.Model


class Engine:
    """The model state. Every method runs on the worker thread only."""

    def __init__(self) -> None:
        self.model: Any = None  # SentenceTransformer or CrossEncoder
        self.cross = False
        self.normalize = True

    def load(self, req: Any) -> Any:
        """LoadModel: a SentenceTransformer, or a CrossEncoder when asked."""
        import torch

        path = model_path(req)
        if not path:
            return backend_pb2.Result(success=False, message="no model given (ModelFile or Model)")
        if os.path.isabs(path) and not os.path.exists(path):
            return backend_pb2.Result(success=False, message=f"model not found: {path}")
        opts = parse_options(req.Options)
        torch.set_num_threads(max(1, req.Threads or os.cpu_count() or 1))
        device = "cuda" if req.CUDA and torch.cuda.is_available() else "cpu"
        cross = req.Type.lower() == "crossencoder" or truthy(opts.get("cross_encoder"))
        self.free()
        try:
            if cross:
                from sentence_transformers import CrossEncoder

                model = CrossEncoder(path, device=device, trust_remote_code=req.TrustRemoteCode)
            else:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(path, device=device, trust_remote_code=req.TrustRemoteCode)
            if opts.get("max_seq_length"):
                setattr(model, "max_length" if cross else "max_seq_length", int(opts["max_seq_length"]))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            return backend_pb2.Result(success=False, message=f"failed to load {path}: {exc}")
        self.normalize = opts.get("normalize", "true").lower() != "false"
        if not cross and not self.normalize and type(model[-1]).__name__ == "Normalize":
            del model[len(model) - 1]
        self.model, self.cross = model, cross
        kind = "CrossEncoder" if cross else "SentenceTransformer"
        return backend_pb2.Result(success=True, message=f"{kind} loaded on {device}")

    def free(self) -> Any:
        """Free: drop the model (and the CUDA cache when there is one)."""
        if self.model is not None:
            self.model = None
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return backend_pb2.Result(success=True, message="model freed")

    def _require(self) -> Any:
        if self.model is None:
            raise NotLoaded("model not loaded")
        return self.model

    def _max_len(self) -> int | None:
        model = self.model
        return model.max_length if self.cross else model.max_seq_length

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees for ``texts`` (special tokens included, truncated)."""
        enc = self._require().tokenizer(texts, truncation=True, max_length=self._max_len())
        return sum(len(ids) for ids in enc["input_ids"])

    def _text(self, req: Any) -> str:
        """Prompt, or EmbeddingTokens decoded back to text."""
        if not req.EmbeddingTokens:
            return req.Prompt
        tok = self.model.tokenizer
        ids = list(req.EmbeddingTokens)
        if min(ids) < 0 or max(ids) >= len(tok):
            raise BadRequest(f"token ids must lie in [0, {len(tok)})")
        return tok.decode(ids, skip_special_tokens=True)

    def embed(self, req: Any) -> Any:
        """Embedding: one pooled vector for Prompt (or EmbeddingTokens)."""
        result = self.embed_many([req])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def embed_many(self, reqs: list[Any]) -> list[Any]:
        """Embed several requests in one ``encode`` call; a bad request gets its own exception."""
        model = self._require()
        if self.cross:
            raise BadRequest("this model is a CrossEncoder: it ranks pairs and has no embeddings")
        texts: list[Any] = []
        for req in reqs:
            try:
                texts.append(self._text(req))
            except Exception as exc:  # noqa: BLE001 - reported to that request only
                texts.append(exc)
        good = [t for t in texts if isinstance(t, str)]
        vectors = iter(model.encode(good, normalize_embeddings=self.normalize, convert_to_numpy=True)) if good else iter(())
        results: list[Any] = []
        for text in texts:
            if not isinstance(text, str):
                results.append(text)
                continue
            vec = next(vectors)
            results.append(backend_pb2.EmbeddingResult(
                embeddings=vec.tolist(), dim=len(vec), tokens=1, prompt_tokens=self.count_tokens([text]),
                layout=backend_pb2.EMBEDDING_LAYOUT_FINAL))
        return results

    def rerank(self, req: Any) -> Any:
        """Rerank: documents by descending relevance to the query, ``top_n`` of them (0 = all)."""
        model = self._require()
        if not req.query.strip():
            raise BadRequest("query must not be empty")
        docs = list(req.documents)
        if not docs:
            raise BadRequest("documents must not be empty")
        if self.cross:
            scores = model.predict([(req.query, d) for d in docs], convert_to_numpy=True)
            if scores.ndim == 2:  # several labels: the last one is "relevant"
                scores = scores[:, -1]
            n_tokens = self.count_tokens([req.query] * len(docs)) + self.count_tokens(docs)
        else:
            emb = model.encode([req.query, *docs], normalize_embeddings=True, convert_to_numpy=True)
            scores = emb[1:] @ emb[0]
            n_tokens = self.count_tokens([req.query]) + self.count_tokens(docs)
        order = sorted(range(len(docs)), key=lambda i: -float(scores[i]))
        if req.top_n > 0:
            order = order[: req.top_n]
        return backend_pb2.RerankResult(
            usage=backend_pb2.Usage(total_tokens=n_tokens, prompt_tokens=n_tokens),
            results=[
                backend_pb2.DocumentResult(index=i, text=docs[i], relevance_score=float(scores[i]))
                for i in order
            ],
        )

    def tokenize(self, req: Any) -> Any:
        """TokenizeString: the prompt's token ids, without special tokens."""
        ids = self._require().tokenizer(req.Prompt, add_special_tokens=False)["input_ids"]
        return backend_pb2.TokenizationResponse(length=len(ids), tokens=ids)


class _Pending:
    """One Embedding call waiting for its batch."""

    __slots__ = ("request", "done", "result")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.done = threading.Event()
        self.result: Any = None


class SentenceTransformersServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service; handlers relay work to the single model worker thread."""

    def __init__(self) -> None:
        self.worker = Worker("st-worker")
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._scheduled = False
        self.engine = Engine()
        self.model = ""

    def _call(self, request: Any, context: Any, fn: Callable[..., Any]) -> Any:
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)
        try:
            return self.worker.run(fn, request)
        except Exception as exc:  # noqa: BLE001
            abort_for(exc, context, "sentence-transformers")

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        try:
            result = self.worker.run(self.engine.load, request)
        except Exception as exc:  # noqa: BLE001 - e.g. torch failed to import
            result = backend_pb2.Result(success=False, message=f"failed to load model: {exc}")
        self.model = (request.Model or request.ModelFile) if result.success else ""
        return result

    def Embedding(self, request, context):
        """Concurrent Embedding calls queued while the worker is busy are encoded as one batch."""
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)
        item = _Pending(request)
        with self._lock:
            self._pending.append(item)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            self.worker.submit(self._drain)
        item.done.wait()
        if isinstance(item.result, Exception):
            abort_for(item.result, context, "sentence-transformers")
        return item.result

    def _drain(self, job) -> None:
        """On the worker: embed everything pending in one batch."""
        with self._lock:
            batch, self._pending, self._scheduled = self._pending, [], False
        try:
            results = self.engine.embed_many([p.request for p in batch])
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets it
            results = [exc] * len(batch)
        for item, result in zip(batch, results):
            item.result = result
            item.done.set()

    def Rerank(self, request, context):
        return self._call(request, context, self.engine.rerank)

    def TokenizeString(self, request, context):
        return self._call(request, context, self.engine.tokenize)

    def Status(self, request, context):
        return status_response(self.engine.model is not None, self.worker.busy)

    def Free(self, request, context):
        result = self.worker.run(self.engine.free)
        self.model = ""
        return result
