"""OCI images for backends: pull (via oras-py), safe layer extraction, build/push, OCI layout files.

Every registry HTTP call goes through :class:`oras.provider.Registry`; its own retry decorator
(5 tries, minutes of sleep, no timeouts) is replaced by short retries with timeouts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import os
import platform
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import oras.container
import oras.provider
import requests
import requests.adapters

ProgressFn = Callable[[int, int], None]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
}

TIMEOUT = (5.0, 60.0)  # (connect, read) seconds for every request
RETRIES = 3  # attempts for connection errors, timeouts, 5xx and 429
BACKOFF = 0.25  # seconds, doubled each retry
CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20

_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")
_RAW_DO_REQUEST = oras.provider.Registry.do_request.__wrapped__  # without oras' slow retry loop


class OCIError(Exception):
    """Any failure to resolve, pull, verify, apply, build or push an image."""


# --- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``tag`` defaults to ``latest`` unless a digest is given."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> Reference:
        """Parse ``[oci://]HOST[:PORT]/repo/path[:tag][@sha256:...]`` (Docker Hub when no host)."""
        s = ref.strip().removeprefix("oci://")
        if not s or "://" in s:
            raise OCIError(f"invalid image reference {ref!r}")
        digest = None
        if "@" in s:
            s, digest = s.split("@", 1)
            if not _DIGEST_RE.match(digest):
                raise OCIError(f"invalid image reference {ref!r}: bad digest {digest!r}")
        tag = None
        slash = s.rfind("/")
        if ":" in s[slash + 1:]:
            s, tag = s.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise OCIError(f"invalid image reference {ref!r}: bad tag {tag!r}")
        first, _, rest = s.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
            if not _HOST_RE.match(registry):
                raise OCIError(f"invalid image reference {ref!r}: bad registry host {registry!r}")
        else:
            registry, repository = "docker.io", s
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = "docker.io"
        if registry == "docker.io" and "/" not in repository:
            repository = f"library/{repository}"
        if not _REPO_RE.match(repository):
            raise OCIError(f"invalid image reference {ref!r}: bad repository {repository!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host serving the v2 API (Docker Hub's differs from its name)."""
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry


def is_oci_reference(uri: str) -> bool:
    """True for ``oci://…`` and for bare refs whose first part is a registry host."""
    if uri.startswith("oci://"):
        return True
    if "://" in uri or uri.startswith(("/", ".", "~")) or "/" not in uri:
        return False
    first = uri.split("/", 1)[0]
    if not ("." in first or ":" in first or first == "localhost"):
        return False
    try:
        Reference.parse(uri)
    except OCIError:
        return False
    return True


def _split_host(registry: str) -> tuple[str, str | None]:
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if registry.count(":") == 1:
        host, port = registry.split(":")
        return host, port
    return registry, None


def insecure_registry(registry: str) -> bool:
    """Plain http only for loopback hosts or those in ``LOCALAI_INSECURE_REGISTRIES``."""
    host, port = _split_host(registry.strip().lower())
    if host == "localhost":
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    for entry in os.environ.get("LOCALAI_INSECURE_REGISTRIES", "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        e_host, e_port = _split_host(entry)
        if e_host == host and (e_port is None or e_port == port):
            return True
    return False


# --- registry client ----------------------------------------------------------------------------


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT
        return super().send(request, **kwargs)


class _Client(oras.provider.Registry):
    """oras Registry with request timeouts and short retries on transient errors."""

    def __init__(self, ref: Reference):
        super().__init__(hostname=ref.api_host, insecure=insecure_registry(ref.registry))
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _TimeoutAdapter())
        self.ref = ref
        c = oras.container.Container("placeholder", registry=ref.api_host)
        c.namespace, _, c.repository = ref.repository.rpartition("/")
        c.namespace = c.namespace or None
        c.tag, c.digest = ref.tag or "latest", ref.digest
        self.container = c
        try:  # credentials from ~/.docker/config.json, as oras' own get_manifest/pull do
            self.auth.load_configs(c)
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):
        err = ""
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                resp = _RAW_DO_REQUEST(self, url, method, data=data, headers=dict(headers or {}),
                                       json=json, stream=stream)
            except requests.exceptions.SSLError as exc:
                raise OCIError(f"{self.ref}: TLS error talking to {self.ref.registry} ({exc}); "
                               "for a plain-http registry add it to LOCALAI_INSECURE_REGISTRIES") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                err = f"{type(exc).__name__}: {exc}"
                continue
            except ValueError as exc:  # oras: cannot authenticate
                raise OCIError(f"{self.ref}: {method} {url}: {exc}") from exc
            if resp.status_code >= 500 or resp.status_code == 429:
                err = f"HTTP {resp.status_code}"
                resp.close()
                continue
            return resp
        raise OCIError(f"{self.ref}: {method} {url} failed after {RETRIES} attempts: {err}")

    def url(self, kind: str, ref: str) -> str:
        base = self.container.manifest_url(ref) if kind == "manifests" else self.container.get_blob_url(ref)
        return f"{self.prefix}://{base}"


def _http_error(client: _Client, what: str, resp: requests.Response) -> OCIError:
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError, TypeError):
        pass
    reason = {401: "authentication required", 403: "access denied", 404: "not found"}.get(resp.status_code, "")
    msg = f"{client.ref}: {what}: HTTP {resp.status_code} {reason}".rstrip()
    return OCIError(f"{msg} ({detail})" if detail else msg)


def _hasher(digest: str):
    return hashlib.new(digest.split(":", 1)[0])


def _check_descriptor(client_ref, desc, what: str) -> tuple[str, int]:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise OCIError(f"{client_ref}: {what} has an invalid or unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OCIError(f"{client_ref}: {what} {digest} has an invalid size {size!r}")
    return digest, size


def _get_manifest(client: _Client, ref: str, expect: str | None = None) -> tuple[str, dict, str]:
    """GET a manifest by tag or digest; returns (digest, parsed body, media type)."""
    resp = client.do_request(client.url("manifests", ref), "GET", headers={"Accept": ACCEPT}, stream=True)
    with resp:
        if resp.status_code != 200:
            raise _http_error(client, f"manifest {ref}", resp)
        body = bytearray()
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > MAX_MANIFEST:
                raise OCIError(f"{client.ref}: manifest {ref} is larger than {MAX_MANIFEST} bytes")
        body = bytes(body)
        header = resp.headers.get("Docker-Content-Digest")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
    want = expect or (ref if _DIGEST_RE.match(ref) else None)
    want = want or (header if header and _DIGEST_RE.match(header) else None)
    if want:
        h = _hasher(want)
        h.update(body)
        got = f"{want.split(':')[0]}:{h.hexdigest()}"
        if got != want:
            raise OCIError(f"{client.ref}: manifest {ref} does not match its digest {want} (got {got})")
        digest = want
    else:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise OCIError(f"{client.ref}: manifest {ref} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise OCIError(f"{client.ref}: manifest {ref} is not a JSON object")
    return digest, doc, doc.get("mediaType") or ctype


def _host_platform() -> tuple[str, str]:
    m = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}.get(m, m)
    return "linux", arch


def _pick_platform(where, manifests: list) -> dict:
    """Choose the index entry for the host platform (a lone entry without platform is fine)."""
    if not isinstance(manifests, list) or not manifests:
        raise OCIError(f"{where}: image index lists no manifests")
    want_os, want_arch = _host_platform()
    usable = [m for m in manifests if isinstance(m, dict)
              and (m.get("platform") or {}).get("os") != "unknown"]  # skip attestations
    for m in usable:
        p = m.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch:
            return m
    if len(usable) == 1 and not usable[0].get("platform"):
        return usable[0]
    have = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                   for m in usable})
    raise OCIError(f"{where}: no image for {want_os}/{want_arch} (index has: {', '.join(have) or 'none'})")


def _is_index(doc: dict, mtype: str) -> bool:
    return mtype in (OCI_INDEX, DOCKER_LIST) or ("manifests" in doc and "layers" not in doc)


def _image_manifest(where, doc: dict, mtype: str) -> list[dict]:
    """Validate an image manifest (OCI or Docker v2) and return its layer descriptors."""
    if doc.get("schemaVersion") != 2:
        raise OCIError(f"{where}: unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise OCIError(f"{where}: manifest ({mtype or 'no media type'}) has no layers list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise OCIError(f"{where}: layer {i} is not an object")
        _check_descriptor(where, layer, f"layer {i}")
        lt = layer.get("mediaType", "")
        if lt and lt not in LAYER_TYPES:
            raise OCIError(f"{where}: layer {layer['digest']} has unsupported media type {lt!r}")
    return layers


def _resolve(client: _Client) -> tuple[str, list[dict]]:
    """Top-level digest and the layer list of the host-platform image."""
    ref = client.ref
    top, doc, mtype = _get_manifest(client, ref.digest or ref.tag or "latest")
    for _ in range(3):
        if not _is_index(doc, mtype):
            return top, _image_manifest(ref, doc, mtype)
        entry = _pick_platform(ref, doc.get("manifests"))
        digest, _ = _check_descriptor(ref, entry, "index entry")
        _, doc, mtype = _get_manifest(client, digest, expect=digest)
    raise OCIError(f"{ref}: image indexes nested too deeply")


def remote_digest(ref: str) -> str:
    """Digest of the manifest or index ``ref`` points at (what :func:`pull_image` returns)."""
    r = Reference.parse(ref)
    client = _Client(r)
    target = r.digest or r.tag or "latest"
    resp = client.do_request(client.url("manifests", target), "HEAD", headers={"Accept": ACCEPT})
    with resp:
        if resp.status_code != 200:
            raise _http_error(client, f"manifest {target}", resp)
        header = resp.headers.get("Docker-Content-Digest", "")
    if r.digest:
        return r.digest
    if _DIGEST_RE.match(header):
        return header
    return _get_manifest(client, target)[0]


# --- pull ----------------------------------------------------------------------------------------


def _download(client: _Client, desc: dict, out: Path, state: dict, cancel, max_bytes) -> None:
    """Stream one blob to ``out``, verifying size and digest; retries restart the blob."""
    digest, size = desc["digest"], desc["size"]
    err = ""
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(BACKOFF * 2 ** (attempt - 1))
        h, got = _hasher(digest), 0
        try:
            resp = client.do_request(client.url("blobs", digest), "GET", stream=True,
                                     headers={"Accept-Encoding": "identity"})  # the digest is of raw bytes
            with resp, open(out, "wb") as f:
                if resp.status_code != 200:
                    raise _http_error(client, f"blob {digest}", resp)
                for chunk in resp.iter_content(CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise OCIError("cancelled")
                    got += len(chunk)
                    if got > size:
                        raise OCIError(f"{client.ref}: blob {digest} is larger than its declared size {size}")
                    if max_bytes is not None and state["base"] + got > max_bytes:
                        raise OCIError(f"{client.ref}: download exceeds the limit of {max_bytes} bytes")
                    h.update(chunk)
                    f.write(chunk)
                    if state["progress"] and state["base"] + got > state["reported"]:
                        state["reported"] = state["base"] + got
                        state["progress"](state["reported"], state["total"])
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            err = f"{type(exc).__name__}: {exc}"
            continue
        if got != size:
            raise OCIError(f"{client.ref}: blob {digest} is {got} bytes, the manifest declares {size}")
        actual = f"{digest.split(':')[0]}:{h.hexdigest()}"
        if actual != digest:
            raise OCIError(f"{client.ref}: blob {digest} failed verification (content digest is {actual})")
        state["base"] += size
        return
    raise OCIError(f"{client.ref}: download of blob {digest} failed after {RETRIES} attempts: {err}")


def _check_dest(dest: Path) -> None:
    if not dest.is_dir():
        raise OCIError(f"destination {dest} is not a directory")
    if any(dest.iterdir()):
        raise OCIError(f"destination {dest} is not empty")


def pull_image(ref: str, dest: Path, *, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None, max_bytes: int | None = None) -> str:
    """Pull the host-platform image ``ref`` and apply its layers into the empty dir ``dest``.

    Layers are downloaded and verified (into a temp dir beside ``dest``) before any is applied.
    Returns the top-level manifest (or index) digest.
    """
    dest = Path(dest)
    _check_dest(dest)
    if cancel is not None and cancel.is_set():
        raise OCIError("cancelled")
    client = _Client(Reference.parse(ref))
    top, layers = _resolve(client)
    total = sum(layer["size"] for layer in layers)
    if max_bytes is not None and total > max_bytes:
        raise OCIError(f"{client.ref}: image layers total {total} bytes, more than the limit of {max_bytes}")
    state = {"base": 0, "reported": 0, "total": total, "progress": progress}
    if progress:
        progress(0, total)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.oci-", dir=dest.parent))
    try:
        paths = []
        for i, layer in enumerate(layers):
            paths.append(tmp / f"layer-{i}")
            _download(client, layer, paths[-1], state, cancel, max_bytes)
        for path, layer in zip(paths, layers, strict=True):
            if cancel is not None and cancel.is_set():
                raise OCIError("cancelled")
            try:
                apply_layer(path, dest)
            except OCIError as exc:
                raise OCIError(f"{client.ref}: layer {layer['digest']}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return top


# --- layer extraction -----------------------------------------------------------------------------


def _open_layer(f) -> tarfile.TarFile:
    magic = f.read(4)
    f.seek(0)
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise OCIError("layer is zstd-compressed; install the 'zstandard' package to apply it") from None
        return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(f), mode="r|")
    return tarfile.open(fileobj=f, mode="r|*")  # plain tar, gzip, bzip2, xz (by magic bytes)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _utime(path: str, mtime) -> None:
    try:
        os.utime(path, (mtime, mtime))
    except (OverflowError, OSError, ValueError):
        pass


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Applier:
    def __init__(self, dest: Path):
        self.root = os.path.realpath(dest)
        self.safe: set[str] = {""}  # dirs verified to be real directories (not symlinks)
        self.written: set[str] = set()
        self.dirs: list[tuple[str, int, int]] = []

    def parent(self, rel: str, create: bool = True) -> str | None:
        """Absolute path of ``rel``'s parent; refuses symlinks/non-dirs on the way."""
        parts = rel.split("/")[:-1]
        cur = ""
        for part in parts:
            cur = f"{cur}/{part}" if cur else part
            if cur in self.safe:
                continue
            full = os.path.join(self.root, cur)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(full, 0o755)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise OCIError(f"{rel}: refusing to write through symlink {cur}")
                if not stat.S_ISDIR(st.st_mode):
                    raise OCIError(f"{rel}: parent {cur} is not a directory")
            self.safe.add(cur)
        return os.path.join(self.root, *parts) if parts else self.root

    def clear(self, full: str) -> None:
        if os.path.lexists(full):
            _remove(full)
            self.safe = {""}

    def whiteout(self, rel: str) -> None:
        d, base = posixpath.split(rel)
        parent = self.parent(rel, create=False)
        if parent is None:
            return
        if base == ".wh..wh..opq":
            for name in os.listdir(parent):
                if posixpath.join(d, name) not in self.written:
                    self.clear(os.path.join(parent, name))
        else:
            name = base[len(".wh."):]
            if name in ("", ".", ".."):
                raise OCIError(f"{rel}: invalid whiteout")
            self.clear(os.path.join(parent, name))

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        raw = m.name
        if raw.startswith("/") or os.path.isabs(raw):
            raise OCIError(f"member {raw!r} has an absolute path")
        rel = posixpath.normpath(raw)
        if rel == "..":
            raise OCIError(f"member {raw!r} escapes the destination")
        if rel.startswith("../"):
            raise OCIError(f"member {raw!r} escapes the destination")
        if rel == ".":
            return
        if posixpath.basename(rel).startswith(".wh."):
            return self.whiteout(rel)
        if m.ischr() or m.isblk() or m.isfifo():
            raise OCIError(f"member {raw!r} is a device file or FIFO")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise OCIError(f"member {raw!r} has unsupported type {m.type!r}")
        parent = self.parent(rel)
        full = os.path.join(parent, posixpath.basename(rel))
        if m.issym():
            target = m.linkname
            resolved = os.path.realpath(os.path.join(parent, target))
            lexical = os.path.normpath(os.path.join(parent, target))
            if not (_inside(self.root, resolved) and _inside(self.root, lexical)):
                raise OCIError(f"symlink {raw!r} -> {target!r} points outside the destination")
        elif m.islnk():
            src_rel = posixpath.normpath(m.linkname)
            if m.linkname.startswith("/") or src_rel == ".." or src_rel.startswith("../"):
                raise OCIError(f"hard link {raw!r} -> {m.linkname!r} points outside the destination")
            src_parent = self.parent(src_rel, create=False)
            src = os.path.join(src_parent, posixpath.basename(src_rel)) if src_parent else None
            if src is None or src_rel == rel or not os.path.lexists(src) or not stat.S_ISREG(os.lstat(src).st_mode):
                raise OCIError(f"hard link {raw!r} -> {m.linkname!r}: target is not an existing regular file")
        if m.isdir():
            if os.path.lexists(full) and (os.path.islink(full) or not os.path.isdir(full)):
                self.clear(full)
            if not os.path.lexists(full):
                os.mkdir(full, 0o700)
            self.dirs.append((full, (m.mode & 0o755) | 0o700, m.mtime))
            self.safe.add(rel)
        else:
            self.clear(full)
            if m.issym():
                os.symlink(m.linkname, full)
            elif m.islnk():
                os.link(src, full, follow_symlinks=False)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tf.extractfile(m), out, CHUNK)
                os.chmod(full, (m.mode & 0o755) | 0o600)
                _utime(full, m.mtime)
        self.written.add(rel)

    def finish(self) -> None:
        for full, mode, mtime in reversed(self.dirs):
            if os.path.isdir(full) and not os.path.islink(full):
                os.chmod(full, mode)
                _utime(full, mtime)
        stack = [self.root]  # links made safely can still chain outside: check them all
        while stack:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if e.is_symlink():
                        if not _inside(self.root, os.path.realpath(e.path)):
                            raise OCIError(f"symlink {os.path.relpath(e.path, self.root)} -> "
                                           f"{os.readlink(e.path)!r} resolves outside the destination")
                    elif e.is_dir(follow_symlinks=False):
                        stack.append(e.path)


def apply_layer(layer: Path, dest: Path) -> None:
    """Apply one layer tarball (tar, gzip, zstd if available) to ``dest`` with whiteouts.

    Refuses (OCIError) absolute or escaping paths, symlinks resolving outside ``dest``,
    writes through existing symlinks, bad hard links and device files/FIFOs. Modes are kept
    minus setuid/setgid/sticky and group/other write; ownership is not changed.
    """
    dest = Path(dest)
    if not dest.is_dir():
        raise OCIError(f"destination {dest} is not a directory")
    applier = _Applier(dest)
    with open(layer, "rb") as f:
        if not f.read(1):
            return  # an empty blob is an empty layer
        f.seek(0)
        try:
            with _open_layer(f) as tf:
                for m in tf:
                    try:
                        applier.member(tf, m)
                    except (OSError, ValueError) as exc:
                        raise OCIError(f"cannot apply member {m.name!r}: {exc}") from exc
        except OCIError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
            raise OCIError(f"layer {Path(layer).name} is not a valid tar archive: {exc}") from exc
    try:
        applier.finish()
    except OSError as exc:
        raise OCIError(f"cannot finish applying layer {Path(layer).name}: {exc}") from exc


# --- OCI layout and docker-save files -----------------------------------------------------------------


class _Source:
    """Read files from an OCI layout / docker-save tarball or directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tar = None if self.path.is_dir() else tarfile.open(self.path, "r:*")
        self.names = {}
        if self.tar:
            for m in self.tar.getmembers():
                self.names[posixpath.normpath(m.name)] = m

    def size(self, name: str) -> int:
        if self.tar:
            m = self.names.get(posixpath.normpath(name))
            return m.size if m is not None else 0
        return (self.path / name).stat().st_size if (self.path / name).is_file() else 0

    def has(self, name: str) -> bool:
        return name in self.names if self.tar else (self.path / name).is_file()

    def open(self, name: str):
        if self.tar:
            m = self.names.get(posixpath.normpath(name))
            f = self.tar.extractfile(m) if m is not None else None
            if f is None:
                raise OCIError(f"{self.path}: missing file {name}")
            return f
        full = os.path.realpath(self.path / name)
        if not _inside(os.path.realpath(self.path), full) or not os.path.isfile(full):
            raise OCIError(f"{self.path}: missing file {name}")
        return open(full, "rb")

    def read(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OCIError(f"{self.path}: {name} is too large")
        return data

    def close(self) -> None:
        if self.tar:
            self.tar.close()


def _json(src: _Source, name: str, data: bytes):
    try:
        return json.loads(data)
    except ValueError as exc:
        raise OCIError(f"{src.path}: {name} is not valid JSON: {exc}") from exc


def _copy_verified(f, out: Path, digest: str | None, what: str, state: dict) -> str:
    """Copy ``f`` to ``out``, returning its sha256 (or ``digest``'s algorithm) digest."""
    h = _hasher(digest) if digest else hashlib.sha256()
    with open(out, "wb") as o:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            o.write(chunk)
            state["done"] += len(chunk)
            if state["progress"]:
                state["progress"](state["done"], state["total"])
    actual = f"{h.name}:{h.hexdigest()}"
    if digest and actual != digest:
        raise OCIError(f"{what} failed verification (content digest is {actual})")
    return actual


def _import_oci(src: _Source, dest: Path, tmp: Path, progress) -> str:
    index = _json(src, "index.json", src.read("index.json"))
    where = f"{src.path}"
    entry = _pick_platform(where, index.get("manifests") if isinstance(index, dict) else None)
    top, _ = _check_descriptor(where, entry, "index.json entry")
    digest = top
    for _ in range(4):
        name = f"blobs/{digest.replace(':', '/')}"
        data = src.read(name)
        h = _hasher(digest)
        h.update(data)
        if f"{digest.split(':')[0]}:{h.hexdigest()}" != digest:
            raise OCIError(f"{where}: manifest {digest} failed verification")
        doc = _json(src, name, data)
        if not isinstance(doc, dict):
            raise OCIError(f"{where}: manifest {digest} is not a JSON object")
        if not _is_index(doc, doc.get("mediaType", "")):
            break
        digest, _ = _check_descriptor(where, _pick_platform(where, doc.get("manifests")), "index entry")
    else:
        raise OCIError(f"{where}: image indexes nested too deeply")
    layers = _image_manifest(where, doc, doc.get("mediaType", ""))
    state = {"done": 0, "total": sum(lay["size"] for lay in layers), "progress": progress}
    paths = []
    for i, layer in enumerate(layers):
        paths.append(tmp / f"layer-{i}")
        with src.open(f"blobs/{layer['digest'].replace(':', '/')}") as f:
            _copy_verified(f, paths[-1], layer["digest"], f"{where}: blob {layer['digest']}", state)
    for path, layer in zip(paths, layers, strict=True):
        try:
            apply_layer(path, dest)
        except OCIError as exc:
            raise OCIError(f"{where}: layer {layer['digest']}: {exc}") from exc
    return top


def _import_docker(src: _Source, dest: Path, tmp: Path, progress) -> str:
    where = f"{src.path}"
    raw = src.read("manifest.json")
    manifest = _json(src, "manifest.json", raw)
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        raise OCIError(f"{where}: manifest.json must describe exactly one image")
    layer_names = manifest[0].get("Layers")
    if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        raise OCIError(f"{where}: manifest.json has no Layers list")
    diff_ids, ident = None, "sha256:" + hashlib.sha256(raw).hexdigest()
    if isinstance(manifest[0].get("Config"), str):
        config_raw = src.read(manifest[0]["Config"])
        ident = "sha256:" + hashlib.sha256(config_raw).hexdigest()  # the Docker image ID
        diff_ids = ((_json(src, "config", config_raw) or {}).get("rootfs") or {}).get("diff_ids")
    state = {"done": 0, "total": sum(src.size(n) for n in layer_names), "progress": progress}
    paths = []
    for i, name in enumerate(layer_names):
        paths.append(tmp / f"layer-{i}")
        with src.open(name) as f:
            actual = _copy_verified(f, paths[-1], None, name, state)
        with open(paths[-1], "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
        if (isinstance(diff_ids, list) and len(diff_ids) == len(layer_names) and not compressed
                and diff_ids[i] != actual):
            raise OCIError(f"{where}: layer {name} does not match diff_id {diff_ids[i]} (got {actual})")
    for path, name in zip(paths, layer_names, strict=True):
        try:
            apply_layer(path, dest)
        except OCIError as exc:
            raise OCIError(f"{where}: layer {name}: {exc}") from exc
    return ident


def import_ocifile(path: Path, dest: Path, *, progress: ProgressFn | None = None) -> str:
    """Apply an OCI layout (tar or dir) or ``docker save`` tarball into the empty dir ``dest``.

    Returns the manifest digest (OCI layout) or the image ID, sha256 of the config (docker save).
    """
    path, dest = Path(path), Path(dest)
    _check_dest(dest)
    if not path.exists():
        raise OCIError(f"{path}: no such file")
    try:
        src = _Source(path)
    except (tarfile.TarError, OSError) as exc:
        raise OCIError(f"{path}: not a tar file or directory: {exc}") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.oci-", dir=dest.parent))
    try:
        if src.has("index.json"):
            return _import_oci(src, dest, tmp, progress)
        if src.has("manifest.json"):
            return _import_docker(src, dest, tmp, progress)
        raise OCIError(f"{path}: neither an OCI image layout (index.json) nor a docker-save tarball")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise OCIError(f"{path}: cannot read: {exc}") from exc
    finally:
        src.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --- build / push / write ---------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _walk(src: Path) -> Iterator[tuple[str, str]]:
    for d, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(d, name)
            yield full, os.path.relpath(full, src).replace(os.sep, "/")


def _manifest_bytes(manifest: dict) -> bytes:
    """Serialized as ``requests``' ``json=`` does, so pushed and written digests agree."""
    return json.dumps(manifest).encode()


def build_image(src_dir: Path) -> tuple[dict, dict[str, bytes]]:
    """One reproducible tar+gzip layer of ``src_dir`` plus an OCI config and manifest."""
    src = Path(src_dir)
    if not (src / "run.sh").is_file():
        raise OCIError(f"{src}: no run.sh at the top of the backend directory")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for full, arc in _walk(src):
            ti = tf.gettarinfo(full, arc)
            if not (ti.isreg() or ti.isdir() or ti.issym() or ti.islnk()):
                raise OCIError(f"{src}: {arc} is not a file, directory or symlink")
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            ti.mode = 0o755 if arc == "run.sh" else ti.mode & 0o777
            if ti.isreg():
                with open(full, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
    tar = raw.getvalue()
    layer = gzip.compress(tar, compresslevel=6, mtime=0)
    config = json.dumps({
        "architecture": _host_platform()[1], "os": "linux",
        "config": {"Entrypoint": ["/run.sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(tar)]},
    }, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha(layer), "size": len(layer)}],
    }
    return manifest, {_sha(config): config, _sha(layer): layer}


def push_image(src_dir: Path, ref: str) -> str:
    """Build ``src_dir`` and push it to ``ref``; returns the manifest digest."""
    manifest, blobs = build_image(src_dir)
    client = _Client(Reference.parse(ref))
    with tempfile.TemporaryDirectory(prefix="localai-push-") as tmp:
        for desc in [manifest["config"], *manifest["layers"]]:
            path = os.path.join(tmp, desc["digest"].split(":")[1])
            with open(path, "wb") as f:
                f.write(blobs[desc["digest"]])
            resp = client.upload_blob(path, client.container, desc)
            if resp.status_code not in (200, 201, 202):
                raise _http_error(client, f"upload of blob {desc['digest']}", resp)
    resp = client.upload_manifest(manifest, client.container)
    if resp.status_code not in (200, 201):
        raise _http_error(client, "upload of manifest", resp)
    return resp.headers.get("Docker-Content-Digest") or _sha(_manifest_bytes(manifest))


def write_ocifile(src_dir: Path, out: Path, ref_name: str = "latest") -> str:
    """Write ``src_dir`` as an OCI image layout tarball at ``out``; returns the manifest digest."""
    manifest, blobs = build_image(src_dir)
    mbytes = _manifest_bytes(manifest)
    digest = _sha(mbytes)
    blobs = {**blobs, digest: mbytes}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": digest, "size": len(mbytes),
        "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    files.update({f"blobs/sha256/{d.split(':')[1]}": b for d, b in sorted(blobs.items())})
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest
