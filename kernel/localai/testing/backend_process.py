"""Run one backend process for tests: start it on a free port, wait for Health, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Iterator

import grpc

from ..backends.client import CHANNEL_OPTIONS
from ..backends.process import free_port
from ..proto import backend_pb2, backend_pb2_grpc


class BackendProcess:
    """A backend started as ``argv + ["--addr", ADDR]`` in its own process group."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None):
        self.address = f"127.0.0.1:{free_port()}"
        self.argv = [*argv, "--addr", self.address]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.stub: backend_pb2_grpc.BackendStub | None = None

    def start(self, timeout: float = 60.0) -> backend_pb2_grpc.BackendStub:
        """Start the process and return a stub once Health answers "OK"."""
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, start_new_session=True)
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.stub.Health(backend_pb2.HealthMessage(), timeout=2).message == b"OK":
                    return self.stub
            except grpc.RpcError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend {self.argv[0]} exited with {self.proc.returncode} before Health")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"backend {self.argv[0]} did not answer Health within {timeout}s")
            time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace``; return the exit code."""
        if self.channel is not None:
            self.channel.close()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


@contextlib.contextmanager
def running_backend(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                    timeout: float = 60.0) -> Iterator[backend_pb2_grpc.BackendStub]:
    """``with running_backend([sys.executable, "-m", "my_backend"]) as stub: ...``"""
    backend = BackendProcess(argv, env=env, cwd=cwd)
    try:
        yield backend.start(timeout)
    finally:
        backend.stop()
