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
from typing import Any, AsyncIterator

import grpc
import orjson
from quart import Blueprint, Response

from ..backends.manager import LoadedModel, ModelManager
from ..errors import BadRequest
from ..models.config import ModelConfig
from ..models.templates import plain_chat_prompt, render, render_chat
from ..proto import backend_pb2
from ..backends.http_upstream import is_http_model
from .common import json_body, json_response, state, versioned
from .forward import forward_json
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Sampling, parse

bp = Blueprint("openai", __name__)

DEFAULT_TEMPERATURE = 0.9
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


route = versioned(bp)


# -- models -----------------------------------------------------------------------------


@route("/models", methods=["GET"])
async def list_models():
    created = int(state().started_at)
    data = [
        {"id": config.name, "object": "model", "created": created, "owned_by": "localai",
         "backend": config.backend_name, "usecases": sorted(model_usecases(config))}
        for config in state().registry.all()
    ]
    return json_response({"object": "list", "data": data})


# -- shared helpers ---------------------------------------------------------------------


def model_usecases(config: ModelConfig) -> set[str]:
    """The model's usecases: ``known_usecases``, else those of its backend."""
    if config.known_usecases is not None:
        return set(config.known_usecases)
    spec = state().host.backend(config.backend_name)
    return set(spec.usecases) if spec else set()


def require_usecase(config: ModelConfig, usecase: str) -> None:
    """A model that cannot do this endpoint's job is a 400, not a crash in its backend."""
    usecases = model_usecases(config)
    if usecases and usecase not in usecases:
        raise BadRequest(
            f"model {config.name!r} does not support {usecase} (it supports: {', '.join(sorted(usecases))})",
            param="model",
            code="unsupported_model",
        )


def model_for(requested: str | None, usecase: str) -> ModelConfig:
    """The config of the requested (or default) model, checked for ``usecase``."""
    config = state().manager.config(pick_model(requested, usecase))
    require_usecase(config, usecase)
    return config


def pick_model(requested: str | None, usecase: str) -> str:
    """The requested model, or (LocalAI's behaviour) the first model that has ``usecase``."""
    if requested:
        return requested
    for config in state().registry.all():
        if usecase in model_usecases(config):
            return config.name
    raise BadRequest(f"no model given and no installed model supports {usecase}", param="model")


def predict_options(req: Sampling, config: ModelConfig, limit: int | None) -> backend_pb2.PredictOptions:
    """PredictOptions from the request, falling back to the model config's defaults."""
    params = config.parameters

    def pick(value, default, fallback):
        return value if value is not None else (default if default is not None else fallback)

    options = backend_pb2.PredictOptions(
        Temperature=pick(req.temperature, params.temperature, DEFAULT_TEMPERATURE),
        TopP=pick(req.top_p, params.top_p, DEFAULT_TOP_P),
        TopK=pick(req.top_k, params.top_k, DEFAULT_TOP_K),
        MinP=pick(req.min_p, params.min_p, 0.0),
        Tokens=pick(limit, params.max_tokens, 0),
        FrequencyPenalty=pick(req.frequency_penalty, params.frequency_penalty, 0.0),
        PresencePenalty=pick(req.presence_penalty, params.presence_penalty, 0.0),
        Penalty=pick(req.repeat_penalty, params.repeat_penalty, 0.0),
        StopPrompts=req.stop_list() + list(config.stopwords),
        Threads=config.threads or state().settings.threads or 0,
    )
    seed = pick(req.seed, params.seed, None)
    if seed is not None:
        options.Seed = seed
    if req.grammar:
        options.Grammar = req.grammar
    return options


async def inference_request(schema, usecase: str):
    """Read an inference request: the body (after plugins adjusted it), validated, and its model."""
    body = await json_body()
    if isinstance(body, dict):
        state().host.before_inference(body)
    req = parse(schema, body)
    return body, req, model_for(req.model, usecase)


def stream_closing(chunks: "Chunks", final_choice: dict[str, Any], req: Sampling, body: dict[str, Any]):
    """The events that end a stream: the finish_reason chunk, then usage when asked for."""
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    host = state().host

    def closing(reason: str, totals: dict[str, int]):
        yield chunks.event({"choices": [{**final_choice, "finish_reason": reason}]})
        if include_usage:
            yield chunks.event({"choices": [], "usage": totals})
        host.after_inference(body, {"finish_reason": reason, "usage": totals})

    return closing


def finish_reason(completion_tokens: int, limit: int) -> str:
    return "length" if limit and completion_tokens >= limit else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class Chunks:
    """Pre-encoded SSE events for one streamed response; only token text is encoded per chunk."""

    MARK = "\x00"

    def __init__(self, base: dict[str, Any], choice_for):
        self.base = base
        self.choice_for = choice_for
        template = orjson.dumps({**base, "choices": [choice_for(self.MARK, None)]})
        self.head, self.tail = template.split(orjson.dumps(self.MARK), 1)
        self.head = b"data: " + self.head
        self.tail = self.tail + b"\n\n"

    def text(self, piece: str) -> bytes:
        return self.head + orjson.dumps(piece) + self.tail

    def event(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**self.base, **payload}) + b"\n\n"


async def stream_response(
    manager: ModelManager,
    model: LoadedModel,
    options: backend_pb2.PredictOptions,
    chunks: Chunks,
    *,
    opening: list[bytes],
    closing,
    limit: int,
) -> Response:
    """Start PredictStream, wait for its first reply (so early failures are real HTTP errors),
    then stream one SSE event per reply. A failure mid-stream becomes an SSE error event."""
    call = model.stub.PredictStream(options)
    replies = call.__aiter__()
    try:
        first = await replies.__anext__()
    except StopAsyncIteration:
        first = None
    except grpc.aio.AioRpcError as exc:
        manager.release(model)
        raise await model.rpc_error(exc, "PredictStream") from None
    except BaseException:
        call.cancel()
        manager.release(model)
        raise

    async def events() -> AsyncIterator[bytes]:
        completion_tokens = prompt_tokens = pieces = 0
        try:
            for item in opening:
                yield item
            reply = first
            while reply is not None:
                if reply.message:
                    pieces += 1
                    yield chunks.text(reply.message.decode("utf-8", "replace"))
                if reply.tokens:
                    completion_tokens = reply.tokens
                if reply.prompt_tokens:
                    prompt_tokens = reply.prompt_tokens
                try:
                    reply = await replies.__anext__()
                except StopAsyncIteration:
                    reply = None
            completion_tokens = completion_tokens or pieces
            for item in closing(finish_reason(completion_tokens, limit), usage(prompt_tokens, completion_tokens)):
                yield item
        except grpc.aio.AioRpcError as exc:
            error = await model.rpc_error(exc, "PredictStream")
            yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
        finally:
            call.cancel()
            manager.release(model)
        yield DONE

    response = Response(events(), content_type="text/event-stream", headers=SSE_HEADERS)
    response.timeout = None
    return response


async def predict(model: LoadedModel, options: backend_pb2.PredictOptions) -> backend_pb2.Reply:
    try:
        return await model.stub.Predict(options)
    except grpc.aio.AioRpcError as exc:
        raise await model.rpc_error(exc, "Predict") from None


# -- chat -------------------------------------------------------------------------------


def chat_options(req: ChatCompletionRequest, config: ModelConfig) -> backend_pb2.PredictOptions:
    options = predict_options(req, config, req.token_limit)
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    if config.system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    template = config.template
    if template.use_tokenizer_template:
        options.UseTokenizerTemplate = True
        options.Messages.extend(backend_pb2.Message(role=m["role"], content=m["content"]) for m in messages)
    elif template.chat:
        options.Prompt = render_chat(template.chat, state().settings.models_path, messages, config.system_prompt)
    else:
        options.Prompt = plain_chat_prompt(messages)
    return options


@route("/chat/completions", methods=["POST"])
async def chat_completions():
    app_state = state()
    body, req, config = await inference_request(ChatCompletionRequest, "chat")
    if is_http_model(config):
        return await forward_json(config, "/chat/completions", body, stream=req.stream)
    name = config.name
    options = chat_options(req, config)
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
    text = reply.message.decode("utf-8", "replace")
    totals = usage(reply.prompt_tokens, reply.tokens)
    result = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason(reply.tokens, limit)}],
        "usage": totals,
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
    name = config.name
    prompts = req.prompts()
    base_options = predict_options(req, config, req.token_limit)
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
            choices.append({"index": index, "text": (prompt + text) if req.echo else text, "logprobs": None,
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
