"""Serving the app with Hypercorn: logging, signals, graceful stop of every backend.

SIGTERM/SIGINT stop accepting connections, let in-flight requests (streams included) finish
for up to ``LOCALAI_SHUTDOWN_TIMEOUT``, then stop every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from .dialects.ollama_port import ollama_only
from .metrics import RequestIdFilter
from .settings import Settings

log = logging.getLogger("localai")


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps; ``level`` is a name like "info" or "debug"."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-5s %(name)s%(request_id)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())


def hypercorn_config(settings: Settings) -> Config:
    host, port = settings.host_port
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = logging.getLogger("localai.access") if settings.log_level == "debug" else None
    config.errorlog = logging.getLogger("localai.http")
    config.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss request_id=%({x-request-id}o)s'
    config.graceful_timeout = settings.shutdown_timeout
    config.keep_alive_timeout = 120
    return config


async def serve(settings: Settings, host=None) -> None:
    """Run the server until SIGINT/SIGTERM, then stop every backend (``host``: the loaded plugins)."""
    from .app import create_app
    from .auth import check_bind

    for listener in settings.listeners():
        check_bind(listener)
    app = create_app(settings, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (stop.set(), app.extensions["localai"].gallery.jobs.close_streams()))

    @app.before_serving
    async def announce():
        host, port = settings.host_port
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        state = app.extensions["localai"]
        log.info("models: %s", ", ".join(c.name for c in state.registry.all()) or "none (add YAML files to %s)"
                 % settings.models_path)
        log.info("LocalAI API is listening on http://%s:%d (OpenAI base URL http://%s:%d/v1)", shown, port, shown, port)

    if settings.ollama_address:
        serve_ollama_too(app, settings.listeners()[1])
    await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
    log.info("server stopped")


def serve_ollama_too(app, settings: Settings) -> None:
    """Serve Ollama's routes of ``app`` on ``settings.address`` from start-up to shutdown of the main
    listener (``--ollama-address``)."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the Ollama listener stopped: %s", task.exception())

    @app.before_serving
    async def start_ollama_listener():
        task = asyncio.get_running_loop().create_task(
            hypercorn_serve(ollama_only(app), hypercorn_config(settings), shutdown_trigger=stop.wait))
        task.add_done_callback(done)
        tasks.append(task)
        log.info("Ollama API is also listening on http://%s", settings.address)

    async def stop_ollama_listener():
        stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 10)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stopping anyway
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    app.after_serving_funcs.insert(0, stop_ollama_listener)  # before the backends stop, as the main listener


def run(settings: Settings, host=None) -> None:
    setup_logging(settings.log_level)
    asyncio.run(serve(settings, host))
