"""Forwarding requests to HTTP backends (OpenAI-compatible upstream servers).

The model name is mapped both ways; streams are passed through line by line as they arrive;
upstream failures come back in the OpenAI error shape (unreachable 502, timeout 504, the
upstream's own 4xx/5xx with its message).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from quart import Response

from ..errors import APIError, BackendError
from ..models.config import ModelConfig
from .common import state

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


class Renamer:
    """Swaps the upstream's model name for ours in response JSON (bytes, no re-encoding)."""

    def __init__(self, upstream_name: str, name: str):
        self.active = upstream_name != name
        self.old = b'"model":' + orjson.dumps(upstream_name)
        self.old_spaced = b'"model": ' + orjson.dumps(upstream_name)
        self.new = b'"model":' + orjson.dumps(name)

    def __call__(self, data: bytes) -> bytes:
        if not self.active:
            return data
        return data.replace(self.old, self.new).replace(self.old_spaced, self.new)


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


async def forward_json(config: ModelConfig, path: str, body: dict[str, Any], *, stream: bool = False,
                       binary: bool = False) -> Response:
    """POST ``body`` (model name mapped) to the upstream ``path``; relay the answer."""
    manager = state().manager
    model = await manager.acquire(config.name)
    upstream = model.upstream
    options = upstream.options
    payload = orjson.dumps({**body, "model": options.upstream_model})
    headers = {"Content-Type": "application/json", **upstream.headers()}
    renamer = Renamer(options.upstream_model, config.name)
    url = f"{options.upstream_url}{path}"
    if not stream:
        try:
            response = await upstream.client.post(path, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise upstream_error(exc, config.name, url) from None
        finally:
            manager.release(model)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, config.name)
        content = response.content if binary else renamer(response.content)
        return Response(content, status=response.status_code,
                        content_type=response.headers.get("content-type", "application/json"))

    response = await open_stream(manager, model, config.name, path, payload, headers)

    async def relay():
        try:
            async for line in response.aiter_lines():
                yield renamer(line.encode("utf-8")) + b"\n"
        except httpx.HTTPError as exc:
            error = upstream_error(exc, config.name, url)
            yield b"data: " + orjson.dumps(error.body()) + b"\n\ndata: [DONE]\n\n"
        finally:
            await response.aclose()
            manager.release(model)

    result = Response(relay(), content_type=response.headers.get("content-type", "text/event-stream"),
                      headers=SSE_HEADERS)
    result.timeout = None
    return result


async def forward_multipart(config: ModelConfig, path: str, form: dict[str, Any], files: dict[str, Any]) -> Response:
    """Forward a multipart upload (audio transcription) with the model name mapped."""
    manager = state().manager
    model = await manager.acquire(config.name)
    upstream = model.upstream
    data = {**form, "model": upstream.options.upstream_model}
    url = f"{upstream.options.upstream_url}{path}"
    try:
        response = await upstream.client.post(path, data=data, files=files, headers=upstream.headers())
    except httpx.HTTPError as exc:
        raise upstream_error(exc, config.name, url) from None
    finally:
        manager.release(model)
    if response.status_code >= 400:
        raise error_from_response(response.status_code, response.content, config.name)
    return Response(response.content, status=response.status_code,
                    content_type=response.headers.get("content-type", "application/json"))
