"""Backend processes: start one, pump its output into the log, stop it, never orphan it."""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import os
import signal
import socket
import sys

from ..backend_spec import BackendHandle, BackendSpec  # noqa: F401  (BackendHandle: its old home)
from .exits import describe_exit_code

log = logging.getLogger("localai.backends")

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-Linux
    _libc = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the kernel dies, even by SIGKILL."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalProcess:
    """A backend started as a local subprocess in its own process group."""

    def __init__(self, spec: BackendSpec, addr: str, model: str, extra_env: dict[str, str] | None = None):
        self.spec = spec
        self.address = addr
        self.model = model
        self.argv = spec.command(addr)
        # LOCALAI_BACKEND_PYTHON: the kernel's own interpreter, for backends (run.sh) that bundle
        # their dependencies for it instead of carrying a venv; the operator's value wins
        self.env = {"LOCALAI_BACKEND_PYTHON": sys.executable, **os.environ, "PYTHONUNBUFFERED": "1",
                    **spec.env, **(extra_env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        self._pumps: list[asyncio.Task] = []
        self._log = logging.getLogger(f"localai.backend.{model}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        log.info("starting backend %s for model %s: %s", self.spec.name, self.model, " ".join(self.argv))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.spec.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout)),
            asyncio.create_task(self._pump(self.proc.stderr)),
        ]

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):  # an over-long line: skip it
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.tail.append(text)
                self._log.info("[%s] %s", self.model, text)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self) -> int | None:
        if self.proc is None:
            return None
        code = await self.proc.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    def describe_exit(self) -> str:
        code = self.proc.returncode if self.proc else None
        text = describe_exit_code(code, self.spec.sigill_hint)
        if self.tail:
            text += f"; last output: {self.tail[-1]}"
        return text

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    async def stop(self, grace: float) -> None:
        """SIGTERM the process group, then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("backend for %s did not stop within %.1fs; killing it", self.model, grace)
            self._signal_group(signal.SIGKILL)
            await self.proc.wait()
        # kill stragglers the backend left in its group (e.g. a run.sh child)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await asyncio.gather(*self._pumps, return_exceptions=True)


class RemoteBackend:
    """An already-running backend at ``host:port``: nothing to start or stop."""

    def __init__(self, address: str):
        self.address = address
        self.pid = None
        self._closed = asyncio.Event()

    async def start(self) -> None:
        return None

    def alive(self) -> bool:
        return not self._closed.is_set()

    async def wait(self) -> int | None:
        await self._closed.wait()
        return None

    def describe_exit(self) -> str:
        return f"remote backend at {self.address}"

    async def stop(self, grace: float) -> None:
        self._closed.set()
