"""``--ollama-address`` / ``LOCALAI_OLLAMA_ADDRESS``: serve the Ollama routes on a second listener
(e.g. ``127.0.0.1:11434``, Ollama's port), so tools that assume Ollama's address work unchanged.

The second listener runs the same app (same models, keys, admission, metrics, security checks)
but answers only ``/api/...`` and Ollama's ``GET /`` heartbeat ("Ollama is running"); its
lifespan is the main listener's. A non-loopback address needs API keys, as ``--address`` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import click

log = logging.getLogger("localai.ollama")
ENV = "LOCALAI_OLLAMA_ADDRESS"


def add_run_option(cli: click.Group) -> None:
    """``local-ai run --ollama-address HOST:PORT`` (it sets ``LOCALAI_OLLAMA_ADDRESS``)."""
    run = cli.commands.get("run")
    if run is None or any(p.name == "ollama_address" for p in run.params):
        return

    def remember(ctx, param, value):
        if value:
            os.environ[ENV] = value
        return value

    run.params.append(click.Option(["--ollama-address"], envvar=ENV, expose_value=False, callback=remember,
                                   help="also serve Ollama's API on this HOST:PORT (e.g. 127.0.0.1:11434)"))


def ollama_only(app):
    """An ASGI app: ``app`` for Ollama's paths, without lifespan events (the main listener has them)."""

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if scope["type"] == "http" and path in ("/", "") and scope.get("method") in ("GET", "HEAD"):
            body = b"Ollama is running"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        if scope["type"] == "http" and not path.startswith("/api/"):
            body = b'{"error":"not found"}'
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return asgi


class OllamaListener:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self, app) -> None:
        address = os.environ.get(ENV, "").strip()
        if not address:
            return
        from hypercorn.asyncio import serve

        from ..auth import check_bind
        from ..server import hypercorn_config

        settings = dataclasses.replace(app.extensions["localai"].settings, address=address)
        check_bind(settings)
        config = hypercorn_config(settings)
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(
            serve(ollama_only(app), config, shutdown_trigger=self.stop.wait))
        self.task.add_done_callback(self._done)
        log.info("Ollama API is also listening on http://%s", address)

    @staticmethod
    def _done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the Ollama listener stopped: %s", task.exception())

    async def close(self) -> None:
        if self.task is not None:
            self.stop.set()
            try:
                await asyncio.wait_for(self.task, 10)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stopping anyway
                self.task.cancel()
            self.task = None


listener = OllamaListener()
