"""One thread for every model call of a backend process: a FIFO job runner.

A ``Worker`` is a daemon thread, started once and kept for the life of the process, that
runs jobs one at a time in the order they were submitted. gRPC handler threads only queue
jobs and relay results, so a library that must stay on one OS thread (llama.cpp with
OpenMP, torch's thread pool...) never sees a second one, and model calls never overlap.

A job is ``fn(job, *args)``: it may put streamed pieces on ``job.out`` and should stop
early once ``job.cancelled`` is set; its return value, or a ``Failure`` wrapping what it
raised, is the last item put on ``job.out``. ``call`` runs a job and returns its result (or
raises); ``run`` does the same for a plain ``fn(*args)``.

Stdlib only: backend processes import it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable


class Failure:
    """Wraps an exception raised by a job, passed back through the result queue."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Job:
    """One unit of work for the worker; ``out`` receives pieces, then the result."""

    __slots__ = ("fn", "args", "out", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False

    def cancel(self) -> None:
        """Ask the worker to skip this job, or the job to stop at its next check."""
        self.cancelled = True


def _plain(job: Job, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class Worker:
    """A daemon thread that runs every job in FIFO order; ``busy`` while one runs."""

    def __init__(self, name: str = "backend-worker") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = False
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job.cancelled:
                job.out.put(Failure(RuntimeError("cancelled")))
                continue
            self.busy = True
            try:
                result = job.fn(job, *job.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result = Failure(exc)
            self.busy = False
            job.out.put(result)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Queue ``fn(job, *args)``; its pieces and result arrive on ``job.out``."""
        job = Job(fn, args)
        self._jobs.put(job)
        return job

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(job, *args)`` on the worker and return its result (or raise)."""
        item = self.submit(fn, *args).out.get()
        if type(item) is Failure:
            raise item.exc
        return item

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (no job argument) on the worker and return its result (or raise)."""
        return self.call(_plain, fn, *args)
