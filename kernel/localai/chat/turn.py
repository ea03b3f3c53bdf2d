"""One chat turn's reply loop, for every dialect and both streaming modes.

:func:`.start.start_chat` runs ``localai_before_inference`` first (it may rewrite the model), then
validates the body, resolves the model, checks its capabilities, builds ``PredictOptions``,
takes admission through the model manager and starts ``PredictStream`` (or the HTTP upstream's
stream, :mod:`.upstream`); failures before the first reply raise :class:`APIError`. Iterate
the :class:`Turn` for events (plain tuples: per token, one tuple and nothing else):

- ``(TEXT, text)``, or ``(TEXT, text, logprobs)`` with the backend's logprobs (JSON bytes);
- ``(TOOL, index, id, name, arguments_piece)``: id and name on the first piece of a call;
- ``(USAGE, prompt_tokens, completion_tokens, cached_prompt_tokens)`` then
  ``(FINISH, reason, stop_sequence)`` at the end (reason: ``stop``, ``length``, ``tool_calls``,
  ``stop_sequence``); ``localai_after_inference`` runs after FINISH was taken;
- ``(ERROR, APIError)``: the backend failed mid-stream (the stream ends after it).

:meth:`Turn.collect` builds a non-streamed reply from the same loop.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import grpc
import orjson

from ..errors import APIError
from ..models.config import ModelConfig
from .request import ChatRequest

TEXT, TOOL, USAGE, FINISH, ERROR = range(5)


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """The usage summary the after-inference hook gets (OpenAI's shape)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


class StopMatcher:
    """Cuts streamed text at the first of ``stops``: one scan per piece (a regex of all the stops)
    over the piece and the held-back tail that could be the start of a stop."""

    def __init__(self, stops: list[str]):
        by_length = sorted({s for s in stops if s}, key=len, reverse=True)  # at one position, the longest wins
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
class Completion:
    """A whole reply: text, tool calls ``{"id", "name", "arguments"}``, logprobs (chat-shaped)."""

    text: str
    tool_calls: list[dict[str, str]]
    logprobs: dict[str, Any] | None = None


class Turn:
    """One running chat turn on a gRPC backend: iterate it for events (see the module docstring).
    Its ``app_state`` is captured at the start: a streamed body runs outside the app context."""

    def __init__(self, app_state: Any, body: dict[str, Any], config: ModelConfig, options: Any, model: Any,
                 call: Any, replies: Any, first: Any, *, request: ChatRequest | None = None,
                 stops: list[str] | None = None,
                 started: float = 0.0, loaded: float = 0.0):
        self.app_state, self.body, self.config, self.options, self.model = app_state, body, config, options, model
        self.call, self.replies, self.first, self.request, self.stops = call, replies, first, request, stops or []
        self.started, self.loaded, self.first_token, self.finished = started, loaded, 0.0, 0.0
        self.finish_reason, self.stop_sequence = "stop", None
        self.prompt_tokens = self.prompt_tokens_cached = self.completion_tokens = 0
        self.error: APIError | None = None
        self.reporting = True  # run localai_after_inference with the summary (collect(report=False): not)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def limit(self) -> int:
        return self.options.Tokens

    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens, self.prompt_tokens_cached)

    def report(self, result: dict[str, Any]) -> None:
        """Run ``localai_after_inference`` with this turn's result."""
        self.app_state.host.after_inference(self.body, result)

    def end(self, reason: str) -> tuple[tuple, tuple]:
        """Close the turn with ``reason``: its USAGE and FINISH events."""
        self.finish_reason = reason
        self.finished = time.perf_counter()
        return ((USAGE, self.prompt_tokens, self.completion_tokens, self.prompt_tokens_cached),
                (FINISH, reason, self.stop_sequence))

    def summary(self) -> dict[str, Any]:
        return {"model": self.name, "finish_reason": self.finish_reason, "usage": self.usage()}

    async def __aiter__(self) -> AsyncIterator[tuple]:
        matcher = StopMatcher(self.stops) if any(self.stops) else None
        replies = self.replies
        pieces = 0
        tool_calls = False
        try:
            reply = self.first
            while reply is not None:
                if reply.chat_deltas:  # the backend parsed its output: text and tool-call pieces
                    pieces += 1
                    self.first_token = self.first_token or time.perf_counter()
                    for delta in reply.chat_deltas:
                        if delta.content:
                            yield (TEXT, delta.content)
                        for piece in delta.tool_calls:
                            tool_calls = True
                            yield (TOOL, piece.index, piece.id, piece.name, piece.arguments)
                elif reply.message:
                    pieces += 1
                    text = reply.message.decode("utf-8", "replace")
                    self.first_token = self.first_token or time.perf_counter()
                    if matcher is not None:
                        text, self.stop_sequence = matcher.feed(text)
                        if text:
                            yield (TEXT, text)
                        if self.stop_sequence is not None:
                            break
                    elif reply.logprobs:
                        yield (TEXT, text, reply.logprobs)
                    else:
                        yield (TEXT, text)
                if reply.tokens:
                    self.completion_tokens = reply.tokens
                if reply.prompt_tokens:
                    self.prompt_tokens = reply.prompt_tokens
                if reply.prompt_tokens_cached:
                    self.prompt_tokens_cached = reply.prompt_tokens_cached
                try:
                    reply = await replies.__anext__()
                except StopAsyncIteration:
                    reply = None
            if matcher is not None and matcher.held:
                yield (TEXT, matcher.held)
            self.completion_tokens = self.completion_tokens or pieces
            if self.stop_sequence is not None:
                reason = "stop_sequence"
            else:
                reason = "length" if self.limit and self.completion_tokens >= self.limit else "stop"
                reason = "tool_calls" if tool_calls and reason == "stop" else reason
            for event in self.end(reason):
                yield event
            if self.reporting:
                self.report(self.summary())
        except grpc.aio.AioRpcError as exc:
            self.error = await self.model.rpc_error(exc, "PredictStream")
            yield (ERROR, self.error)
        finally:
            self.call.cancel()
            self.app_state.manager.release(self.model)

    async def collect(self, *, report: bool = True) -> Completion:
        """Run the whole turn (a non-streamed reply); errors raise. ``report=False``: the caller
        runs :meth:`report` with its own result instead of the summary."""
        self.reporting = report
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        logprobs: list[Any] | None = None
        async for event in self:
            kind = event[0]
            if kind == TEXT:
                text.append(event[1])
                if len(event) > 2:
                    logprobs = (logprobs or []) + (orjson.loads(event[2]).get("content") or [])
            elif kind == TOOL:
                _, index, call_id, name, args = event
                call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or call_id
                call["name"] = call["name"] or name
                call["arguments"] += args
            elif kind == ERROR:
                raise event[1]
        return Completion("".join(text), [calls[i] for i in sorted(calls)],
                          None if logprobs is None else {"content": logprobs})
