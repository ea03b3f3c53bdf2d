"""LocalAIServer: run ``local-ai run`` as a real subprocess for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..backends.process import free_port


def echo_backend_script(directory: Path, python: str = sys.executable) -> Path:
    """Write a LocalAI-style ``run.sh`` that starts the deterministic echo backend."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "run.sh"
    script.write_text(f'#!/bin/sh\nexec "{python}" -m localai.testing.echo_backend "$@"\n')
    script.chmod(0o755)
    return script


class LocalAIServer:
    """A ``local-ai run`` subprocess on a free 127.0.0.1 port, stopped on exit."""

    def __init__(self, models_path: Path, *, args: list[str] | tuple = (), env: dict[str, str] | None = None,
                 python: str = sys.executable, cwd: Path | None = None, port: int | None = None):
        self.port = port or free_port()
        self.models_path = Path(models_path)
        self.argv = [python, "-m", "localai", "run", "--address", f"127.0.0.1:{self.port}",
                     "--models-path", str(self.models_path), *args]
        # backends dirs of its own unless the test names them: nothing installed on this machine
        # (/var/lib/local-ai/backends, ./backends) or set in the caller's environment leaks in
        scratch = Path(tempfile.mkdtemp(prefix="localai-server-"))
        hermetic = {"LOCALAI_BACKENDS_PATH": str(scratch / "backends"),
                    "LOCALAI_BACKENDS_SYSTEM_PATH": str(scratch / "system-backends")}
        self.env = {**os.environ, **hermetic, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="localai-", suffix=".log", delete=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        """Everything the server printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def start(self, timeout: float = 60.0) -> "LocalAIServer":
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"local-ai exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"local-ai did not become ready in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop the server (SIGTERM by default) and return its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> "LocalAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
