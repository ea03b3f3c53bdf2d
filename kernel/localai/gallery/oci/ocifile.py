"""Install from files: an OCI image layout (tarball or directory) or a ``docker save`` tarball."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path

from .layers import apply_layer, inside
from .pull import ProgressFn, check_dest
from .reference import OCIError
from .registry import CHUNK, MAX_MANIFEST, check_descriptor, hasher, image_manifest, is_index, pick_platform


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
        if not inside(os.path.realpath(self.path), full) or not os.path.isfile(full):
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
    h = hasher(digest) if digest else hashlib.sha256()
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
    entry = pick_platform(where, index.get("manifests") if isinstance(index, dict) else None)
    top, _ = check_descriptor(where, entry, "index.json entry")
    digest = top
    for _ in range(4):
        name = f"blobs/{digest.replace(':', '/')}"
        data = src.read(name)
        h = hasher(digest)
        h.update(data)
        if f"{digest.split(':')[0]}:{h.hexdigest()}" != digest:
            raise OCIError(f"{where}: manifest {digest} failed verification")
        doc = _json(src, name, data)
        if not isinstance(doc, dict):
            raise OCIError(f"{where}: manifest {digest} is not a JSON object")
        if not is_index(doc, doc.get("mediaType", "")):
            break
        digest, _ = check_descriptor(where, pick_platform(where, doc.get("manifests")), "index entry")
    else:
        raise OCIError(f"{where}: image indexes nested too deeply")
    layers = image_manifest(where, doc, doc.get("mediaType", ""))
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
    check_dest(dest)
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
