"""ModelManager: one backend process per loaded model; load once, restart on crash, unload.

- concurrent first requests for a model start one process and load once;
- a crashed backend is noticed (its process exits) and dropped, so the next request restarts it;
- a limit on loaded models evicts the least recently used idle one; an idle watchdog unloads
  models unused for ``idle_timeout``, or for the keep-alive a request set on the model;
- unloading calls Free (if implemented), then SIGTERM, then SIGKILL after a grace period;
- every backend it starts gets a fresh secret (``LOCALAI_GRPC_AUTH_TOKEN``, in its environment, never
  its argv) that every call sends, and the one directory output paths are in (``LOCALAI_BACKEND_OUTPUT_DIR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from pathlib import Path
from typing import AsyncIterator

import grpc

from .. import metrics
from ..backend_server import AUTH_TOKEN_ENV, OUTPUT_DIR_ENV
from ..errors import APIError, BackendError, LoadError, ModelNotFound, Unavailable
from ..host import PluginHost
from ..models.config import ModelConfig
from ..models.registry import ModelRegistry
from ..settings import Settings
from .admission import Admission
from .client import BackendClient
from .http_upstream import HttpUpstream, UpstreamOptions, is_http_model
from .loaded import LoadedModel
from .options import model_options
from .process import LocalProcess, RemoteBackend, free_port
from ..backend_spec import BackendSpec

log = logging.getLogger("localai.manager")


class ModelManager:
    """Starts, tracks and stops backend processes for models."""

    def __init__(self, host: PluginHost, registry: ModelRegistry, settings: Settings,
                 output_dir: Path | None = None):
        self.host = host
        self.registry = registry
        self.settings = settings
        # where backends may write output files (each request gets its own directory in it)
        self.output_dir = output_dir
        self.loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task] = {}
        self._watchdog: asyncio.Task | None = None
        self._wakeup = asyncio.Event()  # a keep-alive changed or a model went idle: look again
        self._closed = False
        self.admission = Admission(settings)

    # -- resolution ---------------------------------------------------------------------

    def config(self, name: str) -> ModelConfig:
        """The config of model ``name``: its name, an alias, else the server's fallback model (404 without)."""
        config = self.registry.resolve(name)
        if config is None:
            raise ModelNotFound(name)
        return config

    def spec_for(self, config: ModelConfig) -> BackendSpec:
        name = config.backend_name
        if is_http_model(config):
            return BackendSpec(name="http", description="an OpenAI-compatible HTTP server")
        spec = self.host.backend(name) if name else None
        if spec is None:
            known = ", ".join(sorted(self.host.backends)) or "none installed"
            what = f"backend {config.backend!r}" if name else "no backend"
            raise APIError(
                f"model {config.name!r} needs {what}, which is not available (backends: {known})",
                status=500,
                type="server_error",
                code="backend_not_found",
            )
        return spec

    # -- use ----------------------------------------------------------------------------

    async def acquire(self, name: str) -> LoadedModel:
        """Get a loaded model for one request; it counts as busy until :meth:`release`.

        Admission control may queue the request or refuse it (503 + Retry-After) first.
        """
        config = self.config(name)
        self.admission.check_cooldown(config.name)
        await self.admission.enter(config)
        try:
            model = await self.get(config.name)
        except BaseException:
            self.admission.leave(config.name)
            raise
        model.in_flight += 1
        model.last_used = time.monotonic()
        return model

    def release(self, model: LoadedModel) -> None:
        self.admission.leave(model.name)
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if model.keep_alive is not None and model.in_flight == 0:
            self._wakeup.set()

    def keep_alive(self, name: str, seconds: float | None) -> None:
        """Let the loaded model ``name`` stay idle ``seconds`` (0: unload as soon as it is idle) before the
        watchdog unloads it; None leaves it as it is."""
        model = self.loaded.get(name)
        if seconds is None or model is None:
            return
        model.keep_alive = seconds
        model.last_used = time.monotonic()
        self._wakeup.set()

    def expires_in(self, model: LoadedModel) -> float | None:
        """Seconds until the watchdog unloads ``model`` if it stays idle (None: never)."""
        limit = model.idle_limit(self.settings.idle_timeout)
        return None if limit is None else max(0.0, limit - (time.monotonic() - model.last_used))

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[LoadedModel]:
        """``acquire``/``release`` around a block."""
        model = await self.acquire(name)
        try:
            yield model
        finally:
            self.release(model)

    async def get(self, name: str) -> LoadedModel:
        """The loaded model ``name``, starting and loading its backend if needed (once)."""
        name = self.config(name).name  # an alias or the fallback: the model it names, loaded once
        model = self.loaded.get(name)
        if model is not None and not model.crashed:
            return model
        config = self.config(name)
        task = self._loading.get(name)
        if task is None:
            self.admission.check_cooldown(name)
            # a fresh context: the backend's log pump outlives this request (and its request id)
            task = asyncio.create_task(self._load(config), context=contextvars.Context())
            self._loading[name] = task
            task.add_done_callback(lambda _t, n=name: self._loading.pop(n, None))
            task.add_done_callback(lambda t, n=name, b=config.backend_name: self.admission.load_finished(n, b, t))
        try:
            return await asyncio.shield(task)
        except LoadError as exc:
            raise BackendError(str(exc), code="model_load_failed") from None

    async def _load(self, config: ModelConfig) -> LoadedModel:
        if self._closed:
            raise Unavailable("the server is shutting down")
        spec = self.spec_for(config)
        await self._make_room(config.name)
        if is_http_model(config):
            return await self._load_http(config, spec)
        try:
            model_file = config.model_file(self.settings.models_path)
        except FileNotFoundError as exc:
            raise LoadError(f"cannot load model {config.name!r}: {exc}") from None
        addr = f"127.0.0.1:{free_port()}" if spec.managed else spec.address
        token, env = self.launch_env(spec)
        handle = self.host.launch(spec, addr, config.name, config, env)
        if handle is None:
            raise LoadError(f"no plugin could launch backend {spec.name!r}")
        # a handle sharing a backend that was started elsewhere names that backend's token
        token = getattr(handle, "token", None) or token
        started = time.monotonic()
        try:
            await handle.start()
        except OSError as exc:
            raise LoadError(f"cannot start backend {spec.name!r} for model {config.name!r}: {exc}") from None
        addresses = getattr(handle, "addresses", None) or [handle.address]
        clients = {address: BackendClient(address, token) for address in addresses}
        options = model_options(config, self.settings, model_file)

        async def load_one(address: str) -> None:
            client = clients[address]
            await self._wait_healthy(handle, client, spec, config)
            if await self._answers_strangers(address):
                log.warning("backend %r of model %r at %s answers calls without the kernel's token: any local "
                            "process can use it (it does not check LOCALAI_GRPC_AUTH_TOKEN; see SECURITY.md)",
                            spec.name, config.name, address)
            result = await client.load_model(options, timeout=self.settings.load_timeout)
            if not result.success:
                raise LoadError(
                    f"backend {spec.name!r} could not load model {config.name!r}: {result.message or 'no reason given'}"
                )

        try:
            load = getattr(handle, "load", None)
            if load is not None:
                await load(load_one)
            else:
                for address in clients:
                    await load_one(address)
        except grpc.aio.AioRpcError as exc:
            await self._discard(handle, *clients.values())
            if not handle.alive():
                raise LoadError(
                    f"backend {spec.name!r} died while loading model {config.name!r} ({handle.describe_exit()})"
                ) from None
            raise LoadError(f"backend {spec.name!r} failed to load model {config.name!r}: {exc.details()}") from None
        except BaseException:
            await self._discard(handle, *clients.values())
            raise
        model = LoadedModel(config, spec, handle, clients=list(clients.values()))
        model.watcher = asyncio.create_task(self._watch(model))
        self.loaded[config.name] = model
        metrics.BACKEND_LOADS.labels(config.name, spec.name).inc()
        log.info("model %s loaded by backend %s at %s in %.2fs", config.name, spec.name, ", ".join(clients),
                 time.monotonic() - started)
        return model

    def launch_env(self, spec: BackendSpec) -> tuple[str, dict[str, str]]:
        """The token the kernel will send, and the environment it gives the backend it launches.

        A backend the kernel starts gets a fresh secret; one already running elsewhere
        (``spec.address``) gets the operator's ``LOCALAI_GRPC_AUTH_TOKEN``, as LocalAI does.
        """
        token = secrets.token_urlsafe(32) if spec.managed else self.settings.grpc_auth_token
        env = {**self.settings.backend_env(), AUTH_TOKEN_ENV: token}
        if self.output_dir is not None:
            env[OUTPUT_DIR_ENV] = str(self.output_dir)
        return token, env

    async def _load_http(self, config: ModelConfig, spec: BackendSpec) -> LoadedModel:
        """Connect to (or start and supervise) an OpenAI-compatible HTTP server."""
        options = UpstreamOptions.from_config(config)
        if options.command:
            port = free_port()
            options = options.with_port(port)
            handle = LocalProcess(BackendSpec(name="http", argv=tuple(options.command)), f"127.0.0.1:{port}",
                                  config.name)
            try:
                await handle.start()
            except OSError as exc:
                raise LoadError(f"cannot start the upstream server of {config.name!r}: {exc}") from None
        else:
            options = options.with_port(0)
            handle = RemoteBackend(options.upstream_url)
        upstream = HttpUpstream(options)
        try:
            if options.command:
                await upstream.wait_ready(handle, self.settings.health_timeout)
        except BaseException:
            await upstream.close()
            await handle.stop(self.settings.stop_grace)
            raise
        model = LoadedModel(config, spec, handle, upstream=upstream)
        if options.command:
            model.watcher = asyncio.create_task(self._watch(model))
        self.loaded[config.name] = model
        log.info("model %s is served by %s", config.name, options.upstream_url)
        return model

    async def _wait_healthy(self, handle, client: BackendClient, spec: BackendSpec, config: ModelConfig) -> None:
        deadline = time.monotonic() + self.settings.health_timeout
        delay = 0.02
        while True:
            if not handle.alive():
                raise LoadError(f"backend {spec.name!r} for model {config.name!r} exited ({handle.describe_exit()})")
            try:
                if await client.health(timeout=2.0):
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise LoadError(
                    f"backend {spec.name!r} for model {config.name!r} did not become healthy within "
                    f"{self.settings.health_timeout:.0f}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    @staticmethod
    async def _answers_strangers(address: str) -> bool:
        """True when the backend at ``address`` answers a Health call that carries no token."""
        stranger = BackendClient(address)
        try:
            return await stranger.health(timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
        finally:
            await stranger.close()

    async def _discard(self, handle, *clients: BackendClient) -> None:
        for client in clients:
            await client.close()
        await handle.stop(self.settings.stop_grace)

    async def _watch(self, model: LoadedModel) -> None:
        """Notice a backend that exits on its own and drop it, so the next request restarts it."""
        code = await model.handle.wait()
        if model.stopping:
            return
        model.crashed = True
        metrics.BACKEND_CRASHES.labels(model.name, model.spec.name).inc()
        log.error("backend for model %s exited unexpectedly (%s)", model.name, model.handle.describe_exit())
        if self.loaded.get(model.name) is model:
            del self.loaded[model.name]
        # calls in flight must fail with their own gRPC error, not be cancelled by the close
        await asyncio.gather(*(client.close(grace=5.0) for client in model.clients))
        del code

    # -- eviction -----------------------------------------------------------------------

    async def _make_room(self, incoming: str) -> None:
        limit = self.settings.max_loaded
        if limit <= 0:
            return
        deadline = time.monotonic() + 30.0
        while len(self.loaded) >= limit:
            idle = [m for m in self.loaded.values() if m.in_flight == 0 and not m.config.pinned]
            if idle:
                victim = min(idle, key=lambda m: m.last_used)
                log.info("unloading %s (least recently used) to make room for %s", victim.name, incoming)
                await self.unload(victim.name)
                continue
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"cannot load {incoming!r}: {len(self.loaded)} models are loaded and busy (limit {limit})",
                    headers={"Retry-After": "5"},
                )
            await asyncio.sleep(0.1)

    async def unload(self, name: str) -> bool:
        """Stop the backend of ``name``: Free, SIGTERM, SIGKILL after the grace period."""
        model = self.loaded.pop(name, None)
        if model is None:
            return False
        model.stopping = True
        # a backend shared with other kernels keeps its model: only the handle's stop() knows
        # whether this kernel was the last user
        free = model.handle.alive() and not getattr(model.handle, "shared", False)
        for client in model.clients:
            if free:
                try:
                    await client.free(timeout=self.settings.free_timeout)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                        log.debug("Free failed for %s: %s", name, exc.details())
            await client.close()
        if model.upstream is not None:
            await model.upstream.close()
        await model.handle.stop(self.settings.stop_grace)
        if model.watcher:
            model.watcher.cancel()
        log.info("model %s unloaded", name)
        return True

    async def _idle_watchdog(self) -> None:
        """Unload models idle past their limit; sleeps until the next one is due (or ``watchdog_interval``)."""
        while True:
            due = [left for m in self.loaded.values() if (left := self.expires_in(m)) is not None]
            if self.settings.idle_timeout > 0:  # models loaded since are looked at within the interval
                due.append(self.settings.watchdog_interval)
            wait = min(due, default=None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            self._wakeup.clear()
            for model in list(self.loaded.values()):
                left = self.expires_in(model)
                if model.in_flight == 0 and left is not None and left <= 0 and self.loaded.get(model.name) is model:
                    log.info("model %s idle for %.0fs; unloading", model.name, time.monotonic() - model.last_used)
                    await self.unload(model.name)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._idle_watchdog())

    async def shutdown(self) -> None:
        """Stop every backend (called when the server stops)."""
        self._closed = True
        if self._watchdog:
            self._watchdog.cancel()
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*(self.unload(name) for name in list(self.loaded)), return_exceptions=True)
