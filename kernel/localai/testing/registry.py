"""A throwaway OCI registry for tests: Debian's ``docker-registry`` on 127.0.0.1.

``apt-get install docker-registry`` provides the binary; nothing else is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..backends.process import free_port

INSTALL_HINT = "docker-registry is not installed: run `apt-get install docker-registry`"

_CONFIG = """\
version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: "{root}"}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
"""


class Registry:
    """``docker-registry serve`` on a free loopback port with storage in a temp dir."""

    def __init__(self, workdir: Path | None = None, binary: str | None = None):
        self.binary = binary or shutil.which("docker-registry") or ""
        if not self.binary:
            raise RuntimeError(INSTALL_HINT)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="localai-registry-"))
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, usable as an image reference prefix."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 15.0) -> Registry:
        """Start the server (retrying on a port race) and wait until ``GET /v2/`` is 200."""
        last = ""
        for _ in range(3):
            self.port = free_port()
            (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
            config = self.workdir / "config.yml"
            config.write_text(_CONFIG.format(root=self.workdir / "storage", port=self.port))
            log = open(self.workdir / "registry.log", "wb")
            self.proc = subprocess.Popen(
                [self.binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.workdir,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    time.sleep(0.05)
            last = (self.workdir / "registry.log").read_text(errors="replace")[-2000:]
            self._kill()
        raise RuntimeError(f"docker-registry did not start on 127.0.0.1: {last}")

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """Stop the server and delete its storage (when the temp dir is ours)."""
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
