"""Chat turns on HTTP-backend models (``backend: http``, an OpenAI-compatible upstream): the chat
body goes to the upstream's ``/chat/completions`` as a stream, and its chunks become the same
events a gRPC backend's replies do (see :mod:`.turn`). Stop sequences go to the upstream, so a
turn there ends with ``stop``, never ``stop_sequence``. Also the upstream's errors in our shape
(unreachable 502, timeout 504, its own 4xx/5xx with its message), shared with ``api/forward``."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import httpx
import orjson

from ..errors import APIError, BackendError
from ..proto import backend_pb2
from .request import ChatRequest
from .turn import ERROR, TEXT, TOOL, Turn

REASONS = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def upstream_error(exc: httpx.HTTPError, name: str, url: str) -> APIError:
    if isinstance(exc, httpx.TimeoutException):
        return APIError(f"the upstream of model {name!r} ({url}) timed out", status=504, code="upstream_timeout")
    return BackendError(f"the upstream of model {name!r} ({url}) is unreachable: {type(exc).__name__}: {exc}",
                        code="upstream_unreachable", headers={"Retry-After": "1"})


def error_from_response(status: int, content: bytes, name: str) -> APIError:
    """The upstream's error, kept in (or put into) the OpenAI shape."""
    message = content.decode("utf-8", "replace")[:2000] or f"HTTP {status}"
    try:
        body = orjson.loads(content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = str(body["error"].get("message") or message)
        elif isinstance(body, dict) and body.get("detail"):
            message = str(body["detail"])
    except orjson.JSONDecodeError:
        pass
    if status >= 500:
        return BackendError(f"the upstream of model {name!r} failed: {message}", code="upstream_error")
    return APIError(message, status=status, type="invalid_request_error", code="upstream_rejected")


async def open_stream(manager: Any, model: Any, name: str, path: str, payload: bytes,
                      headers: dict[str, str]) -> httpx.Response:
    """POST to the upstream of an acquired ``model`` and return the streaming response; on a
    failure (no answer, or a 4xx/5xx) release the model and raise the matching API error."""
    upstream = model.upstream
    request = upstream.client.build_request("POST", path, content=payload, headers=headers)
    try:
        response = await upstream.client.send(request, stream=True)
    except httpx.HTTPError as exc:
        manager.release(model)
        raise upstream_error(exc, name, f"{upstream.options.upstream_url}{path}") from None
    if response.status_code >= 400:
        content = await response.aread()
        await response.aclose()
        manager.release(model)
        raise error_from_response(response.status_code, content, name)
    return response


class UpstreamTurn(Turn):
    """A chat turn streamed from an HTTP upstream: ``first`` is the open streaming response,
    ``call`` the upstream URL."""

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
            for event in self.end(reason):
                yield event
            if self.reporting:
                self.report(self.summary())
        except (httpx.HTTPError, ValueError) as exc:
            self.error = upstream_error(exc, self.name, url) if isinstance(exc, httpx.HTTPError) else \
                APIError(f"the upstream of model {self.name!r} sent a malformed stream: {exc}", status=502,
                         type="backend_error", code="upstream_error")
            yield (ERROR, self.error)
        finally:
            await response.aclose()
            self.app_state.manager.release(self.model)


async def start_upstream_chat(app_state: Any, body: dict[str, Any], request: ChatRequest, config: Any,
                              started: float, stops: list[str]) -> UpstreamTurn:
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
    options = backend_pb2.PredictOptions(Tokens=request.max_tokens or 0)
    return UpstreamTurn(app_state, body, config, options, model, url, None, response, request=request,
                        started=started, loaded=loaded)
