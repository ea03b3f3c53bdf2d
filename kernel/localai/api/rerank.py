"""Reranking in LocalAI's Jina shape: ``POST /v1/rerank``."""

from __future__ import annotations

import grpc
from pydantic import Field
from quart import Blueprint

from ..chat.models import model_for
from ..proto import backend_pb2
from .common import json_body, json_response, state, versioned
from .schemas import INT32_MAX, Request, parse

bp = Blueprint("rerank", __name__)
route = versioned(bp)


class RerankRequest(Request):
    model: str | None = None
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1, max_length=10000)
    top_n: int | None = Field(default=None, ge=1, le=INT32_MAX)


@route("/rerank", methods=["POST"])
async def rerank():
    req = parse(RerankRequest, await json_body())
    config = model_for(state(), req.model, "rerank")
    options = backend_pb2.RerankRequest(query=req.query, documents=req.documents, top_n=req.top_n or 0)
    async with state().manager.use(config.name) as model:
        try:
            result = await model.stub.Rerank(options)
        except grpc.aio.AioRpcError as exc:
            raise await model.rpc_error(exc, "Rerank") from None
    results = sorted(
        ({"index": r.index, "document": {"text": r.text or req.documents[r.index]},
          "relevance_score": r.relevance_score} for r in result.results),
        key=lambda r: r["relevance_score"], reverse=True,
    )
    if req.top_n:
        results = results[: req.top_n]
    usage = {"total_tokens": result.usage.total_tokens, "prompt_tokens": result.usage.prompt_tokens}
    return json_response({"model": config.name, "usage": usage, "results": results})
