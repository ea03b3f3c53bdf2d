"""Gallery jobs: installs, deletes and upgrades run in worker threads; their progress is
polled (``GET /backends/jobs/<id>``) or streamed as server-sent events.

Unfinished jobs are recorded in a small JSON file (``<backends>/.jobs.json``); jobs a restart
interrupted are reported as failed after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import metrics
from ..errors import APIError

log = logging.getLogger("localai.jobs")


@dataclass
class Job:
    """One gallery operation; ``status()`` is LocalAI's OpStatus shape."""

    id: str
    kind: str
    name: str
    processed: bool = False
    progress: float = 0.0
    message: str = "queued"
    error: str | None = None
    file_size: int = 0
    downloaded_size: int = 0
    cancelled: bool = False
    created_at: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "gallery_element_name": self.name,
            "deletion": self.kind.endswith("delete"),
            "processed": self.processed,
            "progress": round(self.progress, 1),
            "message": self.message,
            "error": self.error,
            "file_size": self.file_size,
            "downloaded_size": self.downloaded_size,
            "cancellable": not self.processed,
            "cancelled": self.cancelled,
        }


Work = Callable[[Job, Callable[[int, int], None]], str]


class JobManager:
    """Runs gallery work off the event loop and tells subscribers about every change."""

    INTERRUPTED = "interrupted by a restart"

    def __init__(self, max_jobs: int = 500, state_file: Path | None = None):
        self.jobs: dict[str, Job] = {}
        self.max_jobs = max_jobs
        self._subscribers: set[asyncio.Queue] = set()
        self._names: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.state_file = state_file
        self._recover()

    def _recover(self) -> None:
        """Report the jobs a previous run left unfinished as failed, then forget the file."""
        if self.state_file is None or not self.state_file.is_file():
            return
        try:
            records = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable job records %s: %s", self.state_file, exc)
            records = []
        for record in records if isinstance(records, list) else []:
            try:
                job = Job(id=str(record["id"]), kind=str(record["kind"]), name=str(record["name"]),
                          created_at=float(record.get("created_at") or time.time()))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            job.processed, job.error, job.message = True, self.INTERRUPTED, f"error: {self.INTERRUPTED}"
            self.jobs[job.id] = job
            metrics.GALLERY_JOBS.labels(job.kind, "interrupted").inc()
            log.warning("gallery job %s (%s %s) was %s", job.id, job.kind, job.name, self.INTERRUPTED)
        self._save()

    def _save(self) -> None:
        """Write the unfinished jobs atomically (remove the file when there are none)."""
        if self.state_file is None:
            return
        records = [{"id": j.id, "kind": j.kind, "name": j.name, "created_at": j.created_at}
                   for j in self.jobs.values() if not j.processed]
        try:
            if not records:
                self.state_file.unlink(missing_ok=True)
                return
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(records, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("cannot record gallery jobs in %s: %s", self.state_file, exc)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self) -> list[Job]:
        return [job for job in self.jobs.values() if not job.processed]

    def submit(self, kind: str, name: str, work: Work, on_done: Callable[[Job], Any] | None = None) -> Job:
        """Start ``work(job, progress)`` in a thread; its return value becomes the final message."""
        self._loop = asyncio.get_running_loop()
        job = Job(id=str(uuid.uuid4()), kind=kind, name=name)
        self.jobs[job.id] = job
        self._trim()
        self._save()
        asyncio.create_task(self._run(job, work, on_done))
        self._publish(job)
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None and not job.processed:
            job.cancel_event.set()
        return job

    async def _run(self, job: Job, work: Work, on_done) -> None:
        lock = self._names.setdefault(job.name, asyncio.Lock())
        async with lock:  # one operation per backend name at a time
            job.message = f"{job.kind} {job.name}: started"
            self._publish(job)
            last = [0.0]

            def progress(done: int, total: int) -> None:
                job.downloaded_size, job.file_size = done, total
                job.progress = min(99.0, 100.0 * done / total) if total else 0.0
                job.message = f"downloading {job.name}"
                now = time.monotonic()
                if now - last[0] > 0.1 and self._loop is not None:
                    last[0] = now
                    self._loop.call_soon_threadsafe(self._publish, job)

            try:
                job.message = await asyncio.to_thread(work, job, progress) or "done"
                job.progress = 100.0
            except APIError as exc:
                job.error = exc.message
                job.message = f"error: {exc.message}"
            except Exception as exc:  # report every failure on the job, never lose it
                log.exception("%s %s failed", job.kind, job.name)
                job.error = f"{type(exc).__name__}: {exc}"
                job.message = f"error: {job.error}"
            job.cancelled = job.cancel_event.is_set() and job.error is not None
            job.processed = True
            self._save()
            outcome = "cancelled" if job.cancelled else ("error" if job.error else "success")
            metrics.GALLERY_JOBS.labels(job.kind, outcome).inc()
            if on_done is not None:
                try:
                    on_done(job)
                except Exception:  # noqa: BLE001
                    log.exception("after %s %s", job.kind, job.name)
            self._publish(job)

    def _trim(self) -> None:
        done = [j for j in self.jobs.values() if j.processed]
        for job in done[: max(0, len(self.jobs) - self.max_jobs)]:
            self.jobs.pop(job.id, None)

    def _publish(self, job: Job) -> None:
        status = job.status()
        for queue in list(self._subscribers):
            if queue.qsize() < 1000:
                queue.put_nowait(status)

    async def events(self):
        """Yield every job's status on each change, starting with the current ones."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            for job in list(self.jobs.values()):
                yield job.status()
            while True:
                status = await queue.get()
                if status is None:  # the server is shutting down
                    return
                yield status
        finally:
            self._subscribers.discard(queue)

    def close_streams(self) -> None:
        """End every event stream, so open browser tabs don't hold up a shutdown."""
        for queue in list(self._subscribers):
            queue.put_nowait(None)
