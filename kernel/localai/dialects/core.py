"""What the dialect adapters share: one OpenAI-shaped chat request through the kernel's chat core.

An adapter maps its request to the body ``/v1/chat/completions`` takes (messages with
``tool_calls`` and ``role: tool`` results, ``tools``, ``tool_choice``, ``response_format``,
sampling, ``stop``) and calls :func:`start_chat`. That runs the same steps as the OpenAI route
(``localai_before_inference``, validation, the model's usecase and capability checks, the chat
core's ``PredictOptions``, admission control through the model manager) and starts
``PredictStream``; the adapter then iterates :class:`ChatTurn` for core events and encodes its
own wire format. Per token this adds one tuple per reply, nothing else.

Events (plain tuples, cheap to make and to match on):

- ``(TEXT, text)``
- ``(TOOL, index, id, name, arguments_piece)``: id and name are set on the first piece of a call
- ``(ERROR, APIError)``: the backend failed mid-stream (the stream ends after it)

After the iteration ends, ``turn.finish_reason`` (``stop``, ``length``, ``tool_calls``,
``stop_sequence``), ``turn.stop_sequence``, ``turn.prompt_tokens``, ``turn.completion_tokens``
and the timings are set.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import grpc

from ..api import openai as openai_api
from ..api.common import state
from ..api.inference import start_stream
from ..api.schemas import ChatCompletionRequest, parse
from ..backends.http_upstream import is_http_model
from ..errors import APIError, ModelNotFound
from ..models.config import ModelConfig
from ..proto import backend_pb2

try:  # the chat core (tools, tool choice, response format); older kernels build options in openai.py
    from ..api.chat_core import chat_options
except ImportError:  # pragma: no cover - depends on the kernel version
    chat_options = openai_api.chat_options
try:
    from ..api.capabilities import chat_features, require_features
except ImportError:  # pragma: no cover
    chat_features = require_features = None

TEXT, TOOL, ERROR = 0, 1, 2


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def resolve_model(name: str | None, usecase: str = "chat", *, strip_tag: bool = False) -> ModelConfig:
    """The config for ``name`` (an Ollama-style ``name:latest`` resolves to ``name`` when
    ``strip_tag``), checked for ``usecase``."""
    registry = state().registry
    if name and strip_tag and registry.get(name) is None and ":" in name:
        base, _, tag = name.rpartition(":")
        if tag == "latest" or registry.get(base) is not None:
            name = base
    if name and registry.get(name) is None:
        raise ModelNotFound(name)
    return openai_api.model_for(name, usecase)


class StopMatcher:
    """Cuts streamed text at the first of ``stops``: one scan per piece (a regex of all the stops)
    over the piece and the held-back tail that could be the start of a stop."""

    def __init__(self, stops: list[str]):
        by_length = sorted({s for s in stops if s}, key=len, reverse=True)  # at one position, the longest stop wins
        self.pattern = re.compile("|".join(re.escape(s) for s in by_length))
        self.keep = len(by_length[0]) - 1
        self.held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """The text safe to pass on, and the stop sequence found (the turn ends there) or None."""
        held = self.held + text
        match = self.pattern.search(held)
        if match:
            self.held = ""
            return held[:match.start()], match.group()
        cut = max(len(held) - self.keep, 0)
        self.held = held[cut:]
        return held[:cut], None


@dataclass
class ChatTurn:
    """One running chat request: iterate it for events (see the module docstring)."""

    body: dict[str, Any]
    config: ModelConfig
    options: backend_pb2.PredictOptions
    model: Any
    call: Any
    replies: Any
    first: Any
    stops: list[str] = field(default_factory=list)
    started: float = 0.0
    loaded: float = 0.0
    first_token: float = 0.0
    finished: float = 0.0
    finish_reason: str = "stop"
    stop_sequence: str | None = None
    prompt_tokens: int = 0
    prompt_tokens_cached: int = 0  # served from the backend's KV cache
    completion_tokens: int = 0
    error: APIError | None = None
    manager: Any = None  # the app's, captured at the start: a streamed body runs outside the app context
    host: Any = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def limit(self) -> int:
        return self.options.Tokens

    async def __aiter__(self) -> AsyncIterator[tuple]:
        manager, host = self.manager, self.host
        matcher = StopMatcher(self.stops) if any(self.stops) else None
        pieces = 0
        tool_calls = False
        try:
            reply = self.first
            while reply is not None:
                if reply.chat_deltas:
                    pieces += 1
                    if not self.first_token:
                        self.first_token = time.perf_counter()
                    for delta in reply.chat_deltas:
                        if delta.content:
                            yield (TEXT, delta.content)
                        for piece in delta.tool_calls:
                            tool_calls = True
                            yield (TOOL, piece.index, piece.id, piece.name, piece.arguments)
                elif reply.message:
                    pieces += 1
                    text = reply.message.decode("utf-8", "replace")
                    if not self.first_token:
                        self.first_token = time.perf_counter()
                    if matcher is not None:
                        text, self.stop_sequence = matcher.feed(text)
                        if text:
                            yield (TEXT, text)
                        if self.stop_sequence is not None:
                            break
                    else:
                        yield (TEXT, text)
                if reply.tokens:
                    self.completion_tokens = reply.tokens
                if reply.prompt_tokens:
                    self.prompt_tokens = reply.prompt_tokens
                if reply.prompt_tokens_cached:
                    self.prompt_tokens_cached = reply.prompt_tokens_cached
                try:
                    reply = await self.replies.__anext__()
                except StopAsyncIteration:
                    reply = None
            if matcher is not None and matcher.held:
                yield (TEXT, matcher.held)
            self.completion_tokens = self.completion_tokens or pieces
            if self.stop_sequence is not None:
                self.finish_reason = "stop_sequence"
            else:
                self.finish_reason = openai_api.finish_reason(self.completion_tokens, self.limit)
                if tool_calls and self.finish_reason == "stop":
                    self.finish_reason = "tool_calls"
            self.finished = time.perf_counter()
            host.after_inference(self.body, {"model": self.name, "finish_reason": self.finish_reason,
                                             "usage": openai_api.usage(self.prompt_tokens, self.completion_tokens,
                                                                       self.prompt_tokens_cached)})
        except grpc.aio.AioRpcError as exc:
            self.error = await self.model.rpc_error(exc, "PredictStream")
            yield (ERROR, self.error)
        finally:
            self.call.cancel()
            manager.release(self.model)

    async def collect(self) -> "Completion":
        """Run the whole turn: its text and tool calls (for non-streamed replies)."""
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        async for event in self:
            if event[0] == TEXT:
                text.append(event[1])
            elif event[0] == TOOL:
                _, index, call_id, name, args = event
                call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or call_id
                call["name"] = call["name"] or name
                call["arguments"] += args
            else:
                raise event[1]
        return Completion(self, "".join(text), [calls[i] for i in sorted(calls)])


@dataclass
class Completion:
    turn: ChatTurn
    text: str
    tool_calls: list[dict[str, str]]


async def start_chat(body: dict[str, Any], config: ModelConfig | None = None, *,
                     stops: list[str] | None = None) -> ChatTurn:
    """Run an OpenAI-shaped chat body through the chat core and start streaming it.

    ``stops`` are stop sequences the adapter wants to see matched (cut here, not in the
    backend, so the turn knows which one ended it). Failures before the first reply (bad
    request, unknown model, admission, load, backend errors) raise :class:`APIError`.
    """
    app_state = state()
    started = time.perf_counter()
    app_state.host.before_inference(body)
    req = parse(ChatCompletionRequest, body)
    if config is None:
        config = resolve_model(req.model)
    if is_http_model(config):  # an OpenAI-compatible upstream gets the chat body as it is
        from .upstream import start_upstream_chat

        return await start_upstream_chat(body, req, config, app_state, started, list(stops or []))
    if require_features is not None:
        require_features(config, chat_features(req), body)
    options = await asyncio.to_thread(chat_options, req, config)  # CPU-bound: off the event loop
    model = await app_state.manager.acquire(config.name)
    loaded = time.perf_counter()
    call, replies, first = await start_stream(app_state.manager, model, options)
    return ChatTurn(body, config, options, model, call, replies, first, stops=list(stops or []),
                    started=started, loaded=loaded, manager=app_state.manager, host=app_state.host)


def arguments_object(arguments: str) -> Any:
    """A tool call's arguments (JSON text) as a value; ``{}`` when empty, the text when not JSON."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


async def count_prompt_tokens(config: ModelConfig, text: str) -> int:
    """Tokens of ``text`` by the model's own tokenizer (``TokenizeString``)."""
    async with state().manager.use(config.name) as model:
        try:
            result = await model.stub.TokenizeString(backend_pb2.PredictOptions(Prompt=text))
        except grpc.aio.AioRpcError as exc:
            raise await model.rpc_error(exc, "TokenizeString") from None
    return result.length or len(result.tokens)


def document(endpoints: dict[str, dict[int, dict[str, Any]]], error_schema: dict[str, Any] | None = None) -> None:
    """Describe a dialect's routes in ``/openapi.json``: ``endpoints`` maps an endpoint name to
    ``{status: {media type: schema}}``; every error status gets ``error_schema`` (the dialect's
    own error shape) unless listed."""
    from ..api import openapi

    for endpoint, statuses in endpoints.items():
        documented = dict(statuses)
        if error_schema is not None:
            for status in openapi.ERROR_STATUSES:
                documented.setdefault(status, {"application/json": error_schema})
        openapi.RESPONSES[endpoint] = documented
