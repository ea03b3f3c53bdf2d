"""What the inference routes share: picking the model, PredictOptions from sampling settings,
calling Predict, and streaming PredictStream as SSE (one pre-encoded event per token)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import grpc
import orjson
from quart import Response

from ..backends.manager import LoadedModel, ModelManager
from ..errors import BadRequest
from ..models.config import ModelConfig
from ..proto import backend_pb2
from .common import json_body, state
from .schemas import Sampling, parse

DEFAULT_TEMPERATURE = 0.9
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

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


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's usage object; ``cached_tokens``: prompt tokens the backend's KV cache served."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
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

    shape_logprobs = None  # backends send chat-shaped logprobs; /v1/completions reshapes them

    def text_with_logprobs(self, piece: str, logprobs: bytes) -> bytes:
        """A text chunk whose choice carries the backend's logprobs (OpenAI-shaped JSON)."""
        value = orjson.loads(logprobs)
        if self.shape_logprobs is not None:
            value = self.shape_logprobs(value)
        return self.event({"choices": [{**self.choice_for(piece, None), "logprobs": value}]})

    def deltas(self, reply: backend_pb2.Reply) -> list[bytes]:
        """Chat chunks for a reply's ``chat_deltas``: content, then tool-call pieces."""
        events = []
        for delta in reply.chat_deltas:
            if delta.content:
                events.append(self.text(delta.content))
            if delta.tool_calls:
                calls = [tool_call_delta(piece) for piece in delta.tool_calls]
                events.append(self.event({"choices": [{"index": 0, "delta": {"tool_calls": calls},
                                                       "finish_reason": None}]}))
        return events


def tool_call_delta(piece: backend_pb2.ToolCallDelta) -> dict[str, Any]:
    """A streamed tool-call piece in OpenAI's shape: id, type and name in the first of each call."""
    if piece.id or piece.name:
        return {"index": piece.index, "id": piece.id, "type": "function",
                "function": {"name": piece.name, "arguments": piece.arguments}}
    return {"index": piece.index, "function": {"arguments": piece.arguments}}


async def start_stream(manager: Any, model: LoadedModel, options: backend_pb2.PredictOptions) -> tuple[Any, Any, Any]:
    """Start PredictStream and wait for its first reply (None for an empty stream), so that early
    failures become HTTP errors; the model is released on failure. Returns (call, replies, first)."""
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
    return call, replies, first


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
    call, replies, first = await start_stream(manager, model, options)

    async def events() -> AsyncIterator[bytes]:
        completion_tokens = prompt_tokens = cached_tokens = pieces = 0
        try:
            for item in opening:
                yield item
            reply = first
            tool_calls = False
            while reply is not None:
                if reply.chat_deltas:  # the backend parsed its output: text and tool-call pieces
                    pieces += 1
                    for item in chunks.deltas(reply):
                        yield item
                    tool_calls = tool_calls or any(d.tool_calls for d in reply.chat_deltas)
                elif reply.logprobs:
                    pieces += 1
                    yield chunks.text_with_logprobs(reply.message.decode("utf-8", "replace"), reply.logprobs)
                elif reply.message:
                    pieces += 1
                    yield chunks.text(reply.message.decode("utf-8", "replace"))
                if reply.tokens:
                    completion_tokens = reply.tokens
                if reply.prompt_tokens:
                    prompt_tokens = reply.prompt_tokens
                if reply.prompt_tokens_cached:
                    cached_tokens = reply.prompt_tokens_cached
                try:
                    reply = await replies.__anext__()
                except StopAsyncIteration:
                    reply = None
            completion_tokens = completion_tokens or pieces
            reason = finish_reason(completion_tokens, limit)
            reason = "tool_calls" if tool_calls and reason == "stop" else reason
            for item in closing(reason, usage(prompt_tokens, completion_tokens, cached_tokens)):
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

