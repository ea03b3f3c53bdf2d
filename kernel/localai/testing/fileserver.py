"""A threaded HTTP file server for download tests: Range requests, byte counts, fault injection.

Paths are keyed relative to the served directory without a leading slash (``"a/b.bin"``)::

    server = FileServer(tmp_path)
    server.cut_after["big.bin"] = 1000      # next GET sends 1000 body bytes, then drops the connection
    server.fail_next["big.bin"] = [503]     # next GET answers 503
    server.ignore_range.add("big.bin")      # always answer 200 with the whole file
    server.bytes_sent["big.bin"]            # body bytes written so far
    server.requests                         # [(method, path, headers)]
"""

from __future__ import annotations

import mimetypes
import os
import re
import socket
import threading
from collections import defaultdict
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # quiet
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, socket.timeout):
            pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _status(self, code: int, headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        key = unquote(urlsplit(self.path).path).lstrip("/")
        owner.requests.append((self.command, key, self.headers))
        with owner.lock:
            fails = owner.fail_next.get(key)
            status = fails.pop(0) if fails else None
            cut = None if head else owner.cut_after.pop(key, None)
        if status is not None:
            return self._status(status, {"Retry-After": "0"} if status in (429, 503) else None)
        full = os.path.realpath(owner.directory / key)
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        if not full.startswith(str(owner.directory) + os.sep) or not os.path.isfile(full):
            return self._status(404)
        size = os.path.getsize(full)
        start, end, code = 0, size - 1, 200
        m = _RANGE.match(self.headers.get("Range", "").strip())
        if m and key not in owner.ignore_range:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size or start > end:
                return self._status(416, {"Content-Range": f"bytes */{size}"})
            code = 206
        length = end - start + 1 if size else 0
        self.send_response(code)
        self.send_header("Content-Type", mimetypes.guess_type(full)[0] or "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        self.wfile.flush()
        count = length if cut is None else min(cut, length)
        sent = 0
        try:
            with open(full, "rb") as f:
                while sent < count:
                    n = self.connection.sendfile(f, start + sent, count - sent)
                    if not n:
                        break
                    sent += n
        finally:
            with owner.lock:
                owner.bytes_sent[key] += sent
        if cut is not None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FileServer


class FileServer:
    """Serve ``directory`` on ``127.0.0.1:<free port>`` in a background thread."""

    def __init__(self, directory: Path | str):
        self.directory = Path(os.path.realpath(directory))
        self.lock = threading.Lock()
        self.bytes_sent: defaultdict[str, int] = defaultdict(int)
        self.cut_after: dict[str, int] = {}
        self.fail_next: dict[str, list[int]] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str, Message]] = []  # (method, path, request headers)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fileserver-{self.port}", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """The URL of ``path`` (relative to the served directory)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
