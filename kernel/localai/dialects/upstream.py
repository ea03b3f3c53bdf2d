"""Dialects on HTTP-backend models (``backend: http``, an OpenAI-compatible upstream): the chat
body goes to the upstream's ``/chat/completions`` as a stream, and its chunks become the same
core events a gRPC backend's replies do (see :mod:`.core`). Stop sequences go to the upstream,
so a turn there ends with ``stop``, never ``stop_sequence``."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import httpx
import orjson

from ..api.forward import open_stream, upstream_error
from ..errors import APIError
from ..proto import backend_pb2
from .core import ERROR, TEXT, TOOL, ChatTurn

REASONS = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


class UpstreamTurn(ChatTurn):
    """A chat turn streamed from an HTTP upstream: ``first`` is the open streaming response."""

    async def __aiter__(self) -> AsyncIterator[tuple]:
        response, url = self.first, self.call
        reason = "stop"
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = orjson.loads(data)
                if isinstance(chunk.get("error"), dict):
                    self.error = APIError(str(chunk["error"].get("message") or "upstream error"), status=502,
                                          type="backend_error", code="upstream_error")
                    yield (ERROR, self.error)
                    return
                usage = chunk.get("usage") or {}
                self.prompt_tokens = usage.get("prompt_tokens") or self.prompt_tokens
                self.completion_tokens = usage.get("completion_tokens") or self.completion_tokens
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        self.first_token = self.first_token or time.perf_counter()
                        yield (TEXT, delta["content"])
                    for call in delta.get("tool_calls") or []:
                        fn = call.get("function") or {}
                        yield (TOOL, call.get("index", 0), call.get("id") or "", fn.get("name") or "",
                               fn.get("arguments") or "")
                    if choice.get("finish_reason"):
                        reason = REASONS.get(choice["finish_reason"], "stop")
            self.finish_reason = reason
            self.finished = time.perf_counter()
            self.host.after_inference(self.body, {"model": self.name, "finish_reason": reason, "usage": {
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}})
        except (httpx.HTTPError, ValueError) as exc:
            self.error = upstream_error(exc, self.name, url) if isinstance(exc, httpx.HTTPError) else \
                APIError(f"the upstream of model {self.name!r} sent a malformed stream: {exc}", status=502,
                         type="backend_error", code="upstream_error")
            yield (ERROR, self.error)
        finally:
            await response.aclose()
            self.manager.release(self.model)


async def start_upstream_chat(body: dict[str, Any], req: Any, config, app_state, started: float,
                              stops: list[str]) -> UpstreamTurn:
    """Open the upstream stream (errors before its first byte are HTTP errors of ours)."""
    manager = app_state.manager
    model = await manager.acquire(config.name)
    loaded = time.perf_counter()
    upstream = model.upstream
    payload = {**body, "model": upstream.options.upstream_model, "stream": True,
               "stream_options": {"include_usage": True}}
    if stops:
        payload["stop"] = stops
    url = f"{upstream.options.upstream_url}/chat/completions"
    response = await open_stream(manager, model, config.name, "/chat/completions", orjson.dumps(payload),
                                 {"Content-Type": "application/json", **upstream.headers()})
    return UpstreamTurn(body, config, backend_pb2.PredictOptions(Tokens=req.token_limit or 0), model, url, None,
                        response, started=started, loaded=loaded, manager=manager, host=app_state.host)
