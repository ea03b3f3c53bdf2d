"""Forwarding requests to HTTP backends (OpenAI-compatible upstream servers).

The model name is mapped both ways; streams are passed through line by line as they arrive;
upstream failures come back in the OpenAI error shape (see :mod:`localai.chat.upstream`).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from quart import Response

from ..chat.upstream import error_from_response, open_stream, upstream_error
from ..models.config import ModelConfig
from .common import state

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
