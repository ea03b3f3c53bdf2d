"""Starting a turn: hooks first, then the model, validation, options, admission, the backend call.

``localai_before_inference`` runs before anything else reads the body (a plugin may rewrite the
model); an HTTP-upstream model streams from its server (:mod:`.upstream`), any other from its
gRPC backend's ``PredictStream`` (:class:`.turn.Turn`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from ..backends.http_upstream import is_http_model
from ..models.config import ModelConfig
from ..proto import backend_pb2
from .body import ChatCompletionRequest, parse
from .capabilities import chat_features, require_features
from .models import model_for
from .options import chat_options, predict_options
from .request import ChatRequest, Sampling, chat_request
from .turn import Turn
from .upstream import start_upstream_chat


def prepare(app_state: Any, body: Any, schema: type = ChatCompletionRequest, usecase: str = "chat", *,
            strip_tag: bool = False) -> tuple[Any, ModelConfig]:
    """``localai_before_inference`` first (it may rewrite the model), then the validated body and its model."""
    if isinstance(body, dict):
        app_state.host.before_inference(body)
    req = parse(schema, body)
    return req, model_for(app_state, req.model, usecase, strip_tag=strip_tag)


async def start_chat(app_state: Any, body: Any, *, stops: list[str] | None = None, strip_tag: bool = False) -> Turn:
    """Run a chat body (see :mod:`.body`) through the core and start its turn.

    ``stops`` are stop sequences matched here, not in the backend, so the turn knows which one
    ended it (FINISH ``stop_sequence``)."""
    started = time.perf_counter()
    req, config = prepare(app_state, body, strip_tag=strip_tag)
    return await start_prepared(app_state, body, req, config, stops=stops, started=started)


async def start_prepared(app_state: Any, body: dict[str, Any], req: Any, config: ModelConfig, *,
                         stops: list[str] | None = None, started: float = 0.0) -> Turn:
    """:func:`start_chat` after :func:`prepare`."""
    started = started or time.perf_counter()
    request = chat_request(req)
    if is_http_model(config):  # an OpenAI-compatible upstream gets the chat body as it is
        return await start_upstream_chat(app_state, body, request, config, started, list(stops or []))
    require_features(app_state.host, config, chat_features(req), body)
    options = await asyncio.to_thread(chat_options, request, config, app_state.settings)  # CPU-bound
    return await open_turn(app_state, body, config, options, request=request, stops=stops, started=started)


async def open_turn(app_state: Any, body: dict[str, Any], config: ModelConfig, options: Any, *,
                    request: ChatRequest | None = None, stops: list[str] | None = None, started: float = 0.0) -> Turn:
    """Admission, then ``PredictStream``; waits for its first reply so early failures are HTTP errors."""
    manager = app_state.manager
    model = await manager.acquire(config.name)
    loaded = time.perf_counter()
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
    return Turn(app_state, body, config, options, model, call, replies, first, request=request, stops=stops,
                started=started or loaded, loaded=loaded)


def completion_options(app_state: Any, req: Any, config: ModelConfig) -> backend_pb2.PredictOptions:
    """PredictOptions for a completions request (the prompt set per prompt by the caller)."""
    return predict_options(Sampling.of(req), req.stop_list(), req.token_limit, config, app_state.settings)
