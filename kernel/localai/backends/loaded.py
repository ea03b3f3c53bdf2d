"""LoadedModel: a model whose backend is running, its clients (one per replica), use counters,
and how its gRPC failures read to an API client."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from ..errors import APIError, BackendError, NotFound, Unavailable, context_error
from ..models.config import ModelConfig
from ..backend_spec import BackendSpec
from .client import BackendClient
from .http_upstream import HttpUpstream


class LoadedModel:
    """A model whose backend is running and has loaded it."""

    CONNECTION_LOST = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED)

    def __init__(self, config: ModelConfig, spec: BackendSpec, handle, clients: list[BackendClient] | None = None,
                 upstream: HttpUpstream | None = None):
        self.config = config
        self.spec = spec
        self.handle = handle
        self.clients = clients or []  # one client per replica (address) of the backend
        self._stubs = [c.stub for c in self.clients]
        self._turn = 0
        self.upstream = upstream
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.keep_alive: float | None = None  # seconds idle before unloading, as a request asked (Ollama's keep_alive)
        self.loaded_at = time.time()
        self.crashed = False
        self.stopping = False
        self.watcher: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def idle_limit(self, idle_timeout: float) -> float | None:
        """Seconds this model may stay idle: its keep-alive, else the server's ``idle_timeout`` (None: no limit)."""
        if self.keep_alive is not None:
            return self.keep_alive
        return idle_timeout if idle_timeout > 0 and not self.config.pinned else None

    @property
    def stub(self):
        """The gRPC stub for the next call: replicas take turns (read once per call, not per token)."""
        stubs = self._stubs
        if len(stubs) < 2:
            return stubs[0] if stubs else None
        self._turn += 1
        return stubs[self._turn % len(stubs)]

    def describe(self) -> dict:
        info = {
            "id": self.name,
            "backend": self.spec.name,
            "address": self.handle.address,
            "pid": getattr(self.handle, "pid", None),
            "in_flight": self.in_flight,
            "loaded_at": self.loaded_at,
        }
        if len(self.clients) > 1:
            info["addresses"] = [c.address for c in self.clients]
        placement = getattr(self.handle, "placement", None)
        if placement is not None:
            info["placement"] = placement
        return info

    async def rpc_error(self, exc: grpc.aio.AioRpcError, rpc: str) -> APIError:
        """Translate a gRPC failure into an API error the client can act on.

        A broken connection usually means the process died: give its exit a moment to be
        noticed, so the client hears "crashed" with the exit code rather than a socket error.
        """
        code = exc.code()
        detail = exc.details() or code.name
        if code in self.CONNECTION_LOST and self.watcher is not None and not self.crashed:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.watcher), 1.0)
        if self.crashed or (code == grpc.StatusCode.UNAVAILABLE and not self.handle.alive()):
            return BackendError(
                f"the backend for model {self.name!r} crashed ({self.handle.describe_exit()}); "
                "it will be restarted on the next request",
                code="backend_crashed",
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return APIError(
                f"the {self.spec.name!r} backend of model {self.name!r} does not implement {rpc}",
                status=501,
                type="invalid_request_error",
                code="not_implemented",
            )
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return context_error(self.name, detail) or APIError(detail, status=400, type="invalid_request_error",
                                                                code="invalid_argument")
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(detail, code="not_found")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return Unavailable(detail, code="resource_exhausted", headers={"Retry-After": "1"})
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return APIError(f"the backend timed out: {detail}", status=504, code="timeout")
        return BackendError(f"backend error ({self.spec.name}): {detail}", code="backend_error")
