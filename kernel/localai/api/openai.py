"""The OpenAI-compatible routes: models, chat completions, completions, embeddings.

Every route answers with and without the ``/v1`` prefix, as LocalAI does. The streaming hot
path decodes one gRPC message and writes one SSE event per token: the JSON around the
token text is encoded once per request, and only the text is encoded per chunk.
"""

from __future__ import annotations

import array
import asyncio
import base64
import time
import uuid

import grpc
import orjson
from quart import Blueprint

from ..backends.http_upstream import is_http_model
from ..errors import BadRequest, NotFound
from ..models.config import ModelConfig
from ..models.templates import render
from ..proto import backend_pb2
from .capabilities import chat_features, completion_features, model_capabilities, require_features
from .chat_core import chat_choice, chat_options, completion_logprobs
from .common import json_response, state, versioned
from .forward import forward_json
from .inference import (Chunks, finish_reason, inference_request, model_for, model_usecases,  # noqa: F401
                        pick_model, predict, predict_options, require_usecase, stream_closing, stream_response,
                        usage)
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

bp = Blueprint("openai", __name__)
route = versioned(bp)


# -- models -----------------------------------------------------------------------------


def model_info(config: ModelConfig) -> dict:
    """A model as OpenAI lists it, with LocalAI's backend and usecases and its capabilities."""
    return {"id": config.name, "object": "model", "created": int(state().started_at), "owned_by": "localai",
            "backend": config.backend_name, "usecases": sorted(model_usecases(config)),
            "capabilities": model_capabilities(config)}


@route("/models", methods=["GET"])
async def list_models():
    return json_response({"object": "list", "data": [model_info(c) for c in state().registry.all()]})


@route("/models/<path:model_id>", methods=["GET"])
async def retrieve_model(model_id: str):
    config = state().registry.get(model_id)
    if config is None:
        raise NotFound(f"The model {model_id!r} does not exist", param="model", code="model_not_found")
    return json_response(model_info(config))


# -- chat -------------------------------------------------------------------------------


@route("/chat/completions", methods=["POST"])
async def chat_completions():
    app_state = state()
    body, req, config = await inference_request(ChatCompletionRequest, "chat")
    if is_http_model(config):
        return await forward_json(config, "/chat/completions", body, stream=req.stream)
    require_features(config, chat_features(req), body)
    name = config.name
    options = await asyncio.to_thread(chat_options, req, config)  # CPU-bound (schemas, template): off the loop
    limit = options.Tokens
    model = await app_state.manager.acquire(name)
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}

    if req.stream:
        base["object"] = "chat.completion.chunk"
        chunks = Chunks(base, lambda text, reason: {"index": 0, "delta": {"content": text}, "finish_reason": reason})
        closing = stream_closing(chunks, {"index": 0, "delta": {}}, req, body)

        opening = [chunks.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})]
        return await stream_response(app_state.manager, model, options, chunks, opening=opening,
                                     closing=closing, limit=limit)

    try:
        reply = await predict(model, options)
    finally:
        app_state.manager.release(model)
    result = {
        **base,
        "object": "chat.completion",
        "choices": [chat_choice(reply, limit, bool(req.logprobs))],
        "usage": usage(reply.prompt_tokens, reply.tokens, reply.prompt_tokens_cached),
    }
    app_state.host.after_inference(body, result)
    return json_response(result)


# -- completions ------------------------------------------------------------------------


def completion_prompt(prompt: str, config: ModelConfig) -> str:
    if config.template.completion:
        return render(config.template.completion, state().settings.models_path, input=prompt)
    return prompt


@route("/completions", methods=["POST"])
async def completions():
    app_state = state()
    body, req, config = await inference_request(CompletionRequest, "completion")
    if is_http_model(config):
        return await forward_json(config, "/completions", body, stream=req.stream)
    require_features(config, completion_features(req), body)
    name = config.name
    prompts = req.prompts()
    base_options = predict_options(req, config, req.token_limit)
    if req.logprobs is not None:
        base_options.Logprobs = 1
        base_options.TopLogprobs = req.logprobs
    limit = base_options.Tokens
    base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}

    if req.stream:
        if len(prompts) > 1:
            raise BadRequest("streaming supports a single prompt", param="prompt")
        base["object"] = "text_completion"
        options = backend_pb2.PredictOptions()
        options.CopyFrom(base_options)
        options.Prompt = completion_prompt(prompts[0], config)
        chunks = Chunks(base, lambda text, reason: {"index": 0, "text": text, "logprobs": None,
                                                    "finish_reason": reason})
        chunks.shape_logprobs = completion_logprobs
        closing = stream_closing(chunks, {"index": 0, "text": "", "logprobs": None}, req, body)

        opening = [chunks.text(prompts[0])] if req.echo else []
        model = await app_state.manager.acquire(name)
        return await stream_response(app_state.manager, model, options, chunks, opening=opening,
                                     closing=closing, limit=limit)

    choices = []
    prompt_tokens = completion_tokens = 0
    async with app_state.manager.use(name) as model:
        for index, prompt in enumerate(prompts):
            options = backend_pb2.PredictOptions()
            options.CopyFrom(base_options)
            options.Prompt = completion_prompt(prompt, config)
            reply = await predict(model, options)
            text = reply.message.decode("utf-8", "replace")
            logprobs = None
            if reply.logprobs and req.logprobs is not None:
                logprobs = completion_logprobs(orjson.loads(reply.logprobs), len(prompt) if req.echo else 0)
            choices.append({"index": index, "text": (prompt + text) if req.echo else text, "logprobs": logprobs,
                            "finish_reason": finish_reason(reply.tokens, limit)})
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.tokens
    result = {**base, "object": "text_completion", "choices": choices,
              "usage": usage(prompt_tokens, completion_tokens)}
    app_state.host.after_inference(body, result)
    return json_response(result)


# -- embeddings -------------------------------------------------------------------------


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


def encode_vector(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(array.array("f", values).tobytes()).decode("ascii")
    return values


@route("/embeddings", methods=["POST"])
async def embeddings():
    app_state = state()
    body, req, config = await inference_request(EmbeddingRequest, "embeddings")
    if is_http_model(config):
        return await forward_json(config, "/embeddings", body)
    name = config.name
    data = []
    prompt_tokens = 0
    inputs = req.inputs()
    async with app_state.manager.use(name) as model:
        # all inputs in flight at once: a backend that batches queued requests can use that
        calls = [model.stub.Embedding(embedding_options(item)) for item in inputs]
        try:
            results = await asyncio.gather(*calls)
        except grpc.aio.AioRpcError as exc:
            for call in calls:
                call.cancel()
            raise await model.rpc_error(exc, "Embedding") from None
    for index, result in enumerate(results):
        values = vector_of(result)
        if req.dimensions is not None:
            if req.dimensions > len(values):
                raise BadRequest(f"dimensions must be at most {len(values)} for this model", param="dimensions")
            values = values[: req.dimensions]
        prompt_tokens += result.prompt_tokens
        data.append({"object": "embedding", "index": index, "embedding": encode_vector(values, req.encoding_format)})
    result = {"object": "list", "data": data, "model": name,
              "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
    app_state.host.after_inference(body, result)
    return json_response(result)
