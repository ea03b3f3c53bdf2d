"""Admission control for requests to backends.

- per model: at most ``limits.max_concurrent`` requests at once (default
  ``LOCALAI_MAX_CONCURRENT_PER_MODEL``, 0 = unlimited), up to ``limits.max_queue`` more wait
  in FIFO order (default ``LOCALAI_MAX_QUEUE_PER_MODEL``); beyond that 503 + ``Retry-After``;
- across models: at most ``LOCALAI_MAX_CONCURRENT_BACKEND_REQUESTS`` admitted or queued;
- after a model fails to load, requests within ``LOCALAI_MODEL_LOAD_FAILURE_COOLDOWN`` get
  503 + ``Retry-After`` with the original failure, without starting a backend again.

A request holds its slot from ``enter`` to ``leave``: the manager's ``acquire``/``release``,
which for streams is the end of the stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from .. import metrics
from ..errors import LoadError, Unavailable
from ..models.config import ModelConfig
from ..settings import Settings

DEFAULT_RETRY_AFTER = 1


class Gate:
    """One model's running count and its queue of waiters."""

    def __init__(self) -> None:
        self.active = 0
        self.waiting: deque[asyncio.Future] = deque()


class Admission:
    """Per-model concurrency limits and queues, the global cap, and the load-failure cooldown."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.gates: dict[str, Gate] = {}
        self.total = 0  # admitted + queued, every model
        self.failures: dict[str, tuple[float, str]] = {}  # model -> (when, message)

    def limits(self, config: ModelConfig) -> tuple[int, int, int]:
        """(max_concurrent, max_queue, retry_after_seconds) from the model config or the defaults."""
        limits = config.limits
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return (pick(limits.max_concurrent, self.settings.max_concurrent_per_model),
                pick(limits.max_queue, self.settings.max_queue_per_model),
                pick(limits.retry_after_seconds, DEFAULT_RETRY_AFTER))

    def _publish(self, name: str, gate: Gate) -> None:
        metrics.IN_FLIGHT.labels(name).set(gate.active)
        metrics.QUEUE_DEPTH.labels(name).set(len(gate.waiting))

    async def enter(self, config: ModelConfig) -> None:
        """Take a slot for one request to ``config``'s model, waiting in its queue if needed."""
        name = config.name
        max_concurrent, max_queue, retry_after = self.limits(config)
        cap = self.settings.max_concurrent_backend_requests
        if cap > 0 and self.total >= cap:
            raise Unavailable(f"the server is busy: {self.total} requests to backends are running or queued "
                              f"(LOCALAI_MAX_CONCURRENT_BACKEND_REQUESTS={cap}); retry later",
                              code="server_busy", headers={"Retry-After": str(DEFAULT_RETRY_AFTER)})
        gate = self.gates.setdefault(name, Gate())
        if max_concurrent <= 0 or (gate.active < max_concurrent and not gate.waiting):
            gate.active += 1
            self.total += 1
            self._publish(name, gate)
            return
        if len(gate.waiting) >= max_queue:
            raise Unavailable(f"model {name!r} is busy: {gate.active} requests running and {len(gate.waiting)} "
                              f"queued (max_concurrent {max_concurrent}, max_queue {max_queue}); retry later",
                              code="model_busy", headers={"Retry-After": str(retry_after)})
        waiter = asyncio.get_running_loop().create_future()
        gate.waiting.append(waiter)
        self.total += 1
        self._publish(name, gate)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(name)  # the slot was handed over as we were cancelled: pass it on
            else:
                gate.waiting.remove(waiter)
                self.total -= 1
                self._publish(name, gate)
            raise

    def leave(self, name: str) -> None:
        """Give back a slot: the next waiter (if any) takes it over."""
        gate = self.gates.get(name)
        if gate is None:
            return
        self.total -= 1
        while gate.waiting:
            waiter = gate.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        else:
            gate.active -= 1
        self._publish(name, gate)

    # -- load-failure cooldown ------------------------------------------------------------

    def check_cooldown(self, name: str) -> None:
        """Raise 503 + Retry-After while ``name`` is cooling down after a failed load."""
        failure = self.failures.get(name)
        if failure is None:
            return
        failed_at, message = failure
        left = failed_at + self.settings.load_failure_cooldown - time.monotonic()
        if left <= 0:
            self.failures.pop(name, None)
            return
        wait = max(1, math.ceil(left))
        raise Unavailable(f"{message} (not retrying for {wait}s: LOCALAI_MODEL_LOAD_FAILURE_COOLDOWN)",
                          code="model_load_failed", headers={"Retry-After": str(wait)})

    def load_finished(self, name: str, backend: str, task: asyncio.Task) -> None:
        """Done-callback of a load task: start the cooldown on failure, clear it on success."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.failures.pop(name, None)
        elif isinstance(error, LoadError):
            metrics.BACKEND_LOAD_FAILURES.labels(name, backend).inc()
            if self.settings.load_failure_cooldown > 0:
                self.failures[name] = (time.monotonic(), str(error))
