"""Run one backend process for tests: start it on a free port, wait for Health, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import IO, Iterator

import grpc

from ..backends.client import CHANNEL_OPTIONS
from ..backends.process import free_port
from ..proto import backend_pb2, backend_pb2_grpc


class BackendStartError(RuntimeError):
    """The backend exited before Health answered "OK" (``returncode`` set), or did not answer in time.

    ``last`` says what the last Health call got.
    """

    def __init__(self, message: str, *, returncode: int | None = None, last: str = "no answer"):
        super().__init__(message)
        self.returncode = returncode
        self.last = last


class BackendProcess:
    """A backend started as ``argv + ["--addr", ADDR]`` in its own process group.

    ``output``: a file that receives the process's stdout and stderr (default: inherited).
    ``metadata``: sent with the Health calls of ``start`` (e.g. a bearer token).
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 output: IO | None = None, metadata: list[tuple[str, str]] | None = None):
        self.address = f"127.0.0.1:{free_port()}"
        self.argv = [*argv, "--addr", self.address]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.output = output
        self.metadata = metadata
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.stub: backend_pb2_grpc.BackendStub | None = None

    def start(self, timeout: float = 60.0) -> backend_pb2_grpc.BackendStub:
        """Start the process and return a stub once Health answers "OK" (else ``BackendStartError``)."""
        streams = {} if self.output is None else {"stdout": self.output, "stderr": subprocess.STDOUT}
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     start_new_session=True, **streams)
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                reply = self.stub.Health(backend_pb2.HealthMessage(), timeout=2, metadata=self.metadata)
                if reply.message == b"OK":
                    return self.stub
                last = f"Health replied {reply.message!r}"
            except grpc.RpcError as exc:
                last = f"{exc.code()}: {exc.details()}"
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise BackendStartError(f"backend {self.argv[0]} exited with {code} before Health",
                                        returncode=code, last=last)
            if time.monotonic() > deadline:
                self.stop()
                raise BackendStartError(
                    f"backend {self.argv[0]} did not answer Health within {timeout}s ({last})", last=last)
            time.sleep(0.05)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (nothing when it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace``; return the exit code.

        Whatever is left in the group afterwards (e.g. children of a ``run.sh``) is killed too.
        """
        if self.channel is not None:
            self.channel.close()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait()
        self.signal_group(signal.SIGKILL)
        return self.proc.returncode


@contextlib.contextmanager
def running_backend(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                    timeout: float = 60.0, load: backend_pb2.ModelOptions | None = None,
                    load_timeout: float = 120.0) -> Iterator[backend_pb2_grpc.BackendStub]:
    """``with running_backend([sys.executable, "-m", "my_backend"]) as stub: ...``

    With ``load``, the model is loaded first (``RuntimeError`` with its message if LoadModel fails).
    """
    backend = BackendProcess(argv, env=env, cwd=cwd)
    try:
        stub = backend.start(timeout)
        if load is not None:
            result = stub.LoadModel(load, timeout=load_timeout)
            if not result.success:
                raise RuntimeError(f"LoadModel failed: {result.message}")
        yield stub
    finally:
        backend.stop()
