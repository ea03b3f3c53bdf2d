"""The other backend calls the dialects share: embeddings (all inputs in flight at once) and
tokenizing (``TokenizeString``)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from ..proto import backend_pb2


def vector_of(result: backend_pb2.EmbeddingResult) -> list[float]:
    """One flat vector; per-token results are mean-pooled."""
    values = list(result.embeddings)
    dim = result.dim
    per_token = result.layout == backend_pb2.EMBEDDING_LAYOUT_PER_TOKEN or (result.tokens > 1 and dim)
    if per_token and dim and len(values) > dim and len(values) % dim == 0:
        rows = len(values) // dim
        return [sum(values[r * dim + c] for r in range(rows)) / rows for c in range(dim)]
    return values


def embedding_options(item: str | list[int]) -> backend_pb2.PredictOptions:
    options = backend_pb2.PredictOptions()
    if isinstance(item, str):
        options.Prompt = item
    else:
        options.EmbeddingTokens.extend(item)
    return options


async def embed(manager: Any, name: str, inputs: list[str | list[int]]) -> list[backend_pb2.EmbeddingResult]:
    """The backend's result for each input (text or token ids), all requests in flight at once: a
    backend that batches queued requests can use that."""
    async with manager.use(name) as model:
        calls = [model.stub.Embedding(embedding_options(item)) for item in inputs]
        try:
            return list(await asyncio.gather(*calls))
        except grpc.aio.AioRpcError as exc:
            for call in calls:
                call.cancel()
            raise await model.rpc_error(exc, "Embedding") from None


async def tokenize(manager: Any, name: str, text: str) -> backend_pb2.TokenizationResponse:
    """``text`` by the model's own tokenizer."""
    async with manager.use(name) as model:
        try:
            return await model.stub.TokenizeString(backend_pb2.PredictOptions(Prompt=text))
        except grpc.aio.AioRpcError as exc:
            raise await model.rpc_error(exc, "TokenizeString") from None
