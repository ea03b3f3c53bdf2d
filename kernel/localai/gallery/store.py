"""BackendStore: the backends directory — what is installed, and atomic install/delete/upgrade.

Layout (LocalAI's): ``<backends>/<name>/run.sh`` + ``metadata.json`` for a concrete backend,
``<backends>/<meta>/metadata.json`` with ``meta_backend_for`` for a meta backend. An install
is unpacked into ``<backends>/.install-<name>-<random>/root`` and renamed into place, so a
failed or killed install leaves nothing half-installed (stale staging dirs are removed when
the store opens). Everything here is blocking: the API runs it in worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import APIError, BadRequest, NotFound
from ..settings import CAPABILITY_RUN_FILE
from . import download, oci
from .download import Remotes, file_sha256
from .capability import detect_capability, resolve_meta
from .index import GalleryEntry, Galleries

log = logging.getLogger("localai.gallery")

STAGING_PREFIX = ".install-"
BACKUP_PREFIX = ".backup-"
RUN_FILE = "run.sh"
METADATA = "metadata.json"

Progress = Callable[[int, int], None]


class InstallError(APIError):
    """An install that failed; nothing was left behind."""

    status = 422
    type = "invalid_request_error"


@dataclass
class InstalledBackend:
    """One entry of ``GET /backends`` (LocalAI's SystemBackend fields)."""

    name: str
    path: Path
    run_file: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    is_meta: bool = False
    is_system: bool = False

    @property
    def alias(self) -> str:
        return self.metadata.get("alias") or ""

    @property
    def runnable(self) -> bool:
        return self.run_file is not None and self.run_file.is_file()

    def public(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "RunFile": str(self.run_file) if self.run_file else "",
            "IsMeta": self.is_meta,
            "IsSystem": self.is_system,
            "Metadata": self.metadata,
        }


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def valid_name(name: str) -> str:
    name = (name or "").strip()
    if not name or "/" in name or "\\" in name or "\x00" in name or name.startswith(".") or name in ("..",):
        raise BadRequest(f"invalid backend name {name!r}", param="name")
    return name


class BackendStore:
    """Installed backends under ``path`` (plus a read-only system path). ``remotes`` and the
    capability a meta backend installs (forced, else read from ``capability_run_file``, else
    detected) are the operator's settings."""

    def __init__(self, path: Path, system_path: Path | None = None, max_bytes: int | None = None, *,
                 remotes: Remotes = Remotes(), force_capability: str = "",
                 capability_run_file: str = CAPABILITY_RUN_FILE):
        self.path = Path(path)
        self.system_path = Path(system_path) if system_path else None
        self.max_bytes = max_bytes
        self.remotes = remotes
        self.force_capability, self.capability_run_file = force_capability, capability_run_file
        self._lock = threading.RLock()

    # -- listing ------------------------------------------------------------------------

    def remove_stale(self) -> None:
        """Delete staging and backup dirs left by an interrupted install (at server start)."""
        if not self.path.is_dir():
            return
        for child in self.path.iterdir():
            if child.name.startswith((STAGING_PREFIX, BACKUP_PREFIX)):
                log.warning("removing leftovers of an interrupted install: %s", child)
                shutil.rmtree(child, ignore_errors=True)

    @staticmethod
    def _metadata(directory: Path) -> dict[str, Any]:
        try:
            data = json.loads((directory / METADATA).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def installed(self) -> list[InstalledBackend]:
        """Concrete backends (dirs with run.sh), then meta backends pointing at them."""
        result: list[InstalledBackend] = []
        roots = [(self.path, False)] + ([(self.system_path, True)] if self.system_path else [])
        metas: list[tuple[Path, dict]] = []
        for root, system in roots:
            if not root.is_dir():
                continue
            for child in sorted(root.iterdir()):
                if not child.is_dir() or child.name.startswith("."):
                    continue
                metadata = self._metadata(child)
                if (child / RUN_FILE).is_file():
                    metadata.setdefault("name", child.name)
                    result.append(InstalledBackend(child.name, child, child / RUN_FILE, metadata, is_system=system))
                elif metadata.get("meta_backend_for"):
                    metas.append((child, metadata))
        concrete = {b.name: b for b in result}
        for directory, metadata in metas:
            target = concrete.get(metadata["meta_backend_for"])
            result.append(InstalledBackend(directory.name, directory, target.run_file if target else None,
                                           metadata, is_meta=True))
        return result

    def get(self, name: str) -> InstalledBackend | None:
        """By directory name, then metadata name, then alias."""
        backends = self.installed()
        for key in ("dir", "name", "alias"):
            for backend in backends:
                value = {"dir": backend.name, "name": backend.metadata.get("name"), "alias": backend.alias}[key]
                if value and value == name:
                    return backend
        return None

    # -- install ------------------------------------------------------------------------

    def install_entry(self, entry: GalleryEntry, galleries: Galleries, *, force: bool = False,
                      progress: Progress | None = None, cancel: threading.Event | None = None) -> InstalledBackend:
        """Install a gallery entry; a meta entry installs the build for this host's capability."""
        if entry.is_meta:
            capability = detect_capability(self.force_capability, self.capability_run_file)
            concrete = galleries.sibling(entry, resolve_meta(entry.name, entry.capabilities, capability))
            self.install_entry(concrete, galleries, force=force, progress=progress, cancel=cancel)
            return self._write_meta(entry, concrete.name, capability)
        existing = self.get(entry.name)
        if existing and existing.runnable and not force and not existing.is_meta:
            log.info("backend %s is already installed", entry.name)
            return existing
        uris = [entry.uri] + list(entry.mirrors)
        errors = []
        for uri in uris:
            try:
                return self.install_uri(uri, entry.name, entry.alias, gallery=entry.gallery, version=entry.version,
                                        sha256=entry.sha256, progress=progress, cancel=cancel)
            except InstallError as exc:
                errors.append(exc.message)
                if "cancelled" in exc.message:
                    break
        raise InstallError("; ".join(errors), code="install_failed")

    def _write_meta(self, entry: GalleryEntry, concrete: str, capability: str) -> InstalledBackend:
        metadata = {"name": entry.name, "meta_backend_for": concrete, "gallery": entry.gallery,
                    "capability": capability, "installed_at": now_rfc3339(), "version": entry.version,
                    "alias": entry.alias}
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{entry.name}-", dir=self.path))
        root = staging / "root"
        root.mkdir()
        (root / METADATA).write_text(json.dumps(metadata, indent=2))
        with self._lock:
            self._swap(root, self.path / valid_name(entry.name))
        shutil.rmtree(staging, ignore_errors=True)
        return self.get(entry.name)  # type: ignore[return-value]

    def install_uri(self, uri: str, name: str | None = None, alias: str = "", *, gallery: str = "",
                    version: str = "", sha256: str = "", progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> InstalledBackend:
        """Install from an OCI ref, ``ocifile://``, a local dir / ``file://``, or an http(s) tarball."""
        name = valid_name(name or default_name(uri))
        self.path.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=self.path))
        root = staging / "root"
        root.mkdir()
        started = time.monotonic()
        try:
            digest = self._fetch(uri, root, staging, sha256=sha256, progress=progress, cancel=cancel)
            run_file = root / RUN_FILE
            if not run_file.is_file():
                raise InstallError(f"{uri} is not a valid backend: run.sh not found at its root", code="no_run_file")
            if not os.access(run_file, os.X_OK):
                run_file.chmod(run_file.stat().st_mode | 0o700)
            metadata = {"name": name, "alias": alias, "uri": uri, "digest": digest, "gallery": gallery,
                        "version": version, "installed_at": now_rfc3339()}
            (root / METADATA).write_text(json.dumps(metadata, indent=2))
            with self._lock:
                self._swap(root, self.path / name)
        except (oci.OCIError, OSError, ValueError) as exc:
            raise InstallError(f"installing {name} from {uri} failed: {exc}", code="install_failed") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("installed backend %s from %s in %.1fs", name, uri, time.monotonic() - started)
        return self.get(name)  # type: ignore[return-value]

    def _fetch(self, uri: str, root: Path, staging: Path, *, sha256: str, progress: Progress | None,
               cancel: threading.Event | None) -> str:
        """Unpack ``uri`` into ``root``; return its digest."""
        if uri.startswith("ocifile://"):
            return oci.import_ocifile(Path(uri[len("ocifile://"):]), root, progress=progress)
        if oci.is_oci_reference(uri) and not os.path.exists(uri):
            return oci.pull_image(uri[len("oci://"):] if uri.startswith("oci://") else uri, root,
                                  progress=progress, cancel=cancel, max_bytes=self.max_bytes,
                                  insecure_registries=self.remotes.insecure_registries)
        parsed = urlparse(uri)
        if parsed.scheme in ("http", "https"):
            archive = staging / "download"
            try:
                download.download_file(uri, archive, sha256=sha256 or None, progress=progress, cancel=cancel,
                                       remotes=self.remotes)
            except download.DownloadError as exc:
                raise InstallError(str(exc), code="cancelled" if exc.cancelled else "download_failed") from None
            if self.max_bytes and archive.stat().st_size > self.max_bytes:
                raise InstallError(f"{uri} is over the limit of {self.max_bytes} bytes", code="too_large")
            oci.apply_layer(archive, root)
            # download_file verified the given sha256 already: hash again only when none was given
            return "sha256:" + (sha256.lower().removeprefix("sha256:") if sha256 else file_sha256(archive))
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        if path.is_dir():
            shutil.copytree(path, root, symlinks=True, dirs_exist_ok=True)
            return ""
        if path.is_file():
            oci.apply_layer(path, root)
            return "sha256:" + file_sha256(path)
        raise InstallError(f"cannot install {uri!r}: not an OCI reference, URL, archive or directory",
                           code="bad_uri")

    def _swap(self, new_root: Path, target: Path) -> None:
        """Put ``new_root`` at ``target`` atomically, keeping the old one until it is in place."""
        backup = None
        if target.exists() or target.is_symlink():
            backup = self.path / f"{BACKUP_PREFIX}{target.name}-{os.getpid()}-{int(time.time() * 1000)}"
            os.rename(target, backup)
        try:
            os.rename(new_root, target)
        except OSError:
            if backup is not None:
                os.rename(backup, target)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)

    # -- delete / upgrade ---------------------------------------------------------------

    def delete(self, name: str) -> list[str]:
        """Remove a backend (a meta one takes its concrete build along); returns removed names."""
        with self._lock:
            backend = self.get(name)
            if backend is None:
                raise NotFound(f"no backend found with name {name!r}", code="backend_not_found")
            if backend.is_system:
                raise BadRequest(f"backend {name!r} is a system backend and cannot be deleted")
            removed = [backend.name]
            targets = [backend.path]
            if backend.is_meta:
                concrete = self.path / backend.metadata.get("meta_backend_for", "")
                if concrete.is_dir() and concrete != self.path:
                    targets.append(concrete)
                    removed.append(concrete.name)
            for directory in targets:
                trash = self.path / f"{BACKUP_PREFIX}{directory.name}-deleted-{int(time.time() * 1000)}"
                os.rename(directory, trash)
                shutil.rmtree(trash, ignore_errors=True)
            return removed

    def upgrades(self, galleries: Galleries) -> dict[str, dict[str, Any]]:
        """Installed gallery backends whose gallery version or image digest changed."""
        result = {}
        for backend in self.installed():
            if backend.is_system or backend.is_meta or not backend.metadata.get("gallery"):
                continue
            try:
                entry = galleries.find(f"{backend.metadata['gallery']}@{backend.metadata.get('name', backend.name)}")
            except NotFound:
                continue
            info = {"backend_name": backend.name, "installed_version": backend.metadata.get("version", ""),
                    "available_version": entry.version, "installed_digest": backend.metadata.get("digest", "")}
            if entry.version and info["installed_version"]:
                if entry.version != info["installed_version"]:
                    result[backend.name] = info
                continue
            if not oci.is_oci_reference(entry.uri):
                continue
            try:
                info["available_digest"] = oci.remote_digest(entry.uri.removeprefix("oci://"),
                                                             self.remotes.insecure_registries)
            except oci.OCIError as exc:
                log.warning("cannot check %s for upgrades: %s", backend.name, exc)
                continue
            if info["available_digest"] != info["installed_digest"]:
                result[backend.name] = info
        return result

    def upgrade(self, name: str, galleries: Galleries, *, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> InstalledBackend:
        """Reinstall a backend from its gallery entry (keeping its alias)."""
        backend = self.get(name)
        if backend is None:
            raise NotFound(f"no backend found with name {name!r}", code="backend_not_found")
        if backend.is_meta:
            return self.upgrade(backend.metadata["meta_backend_for"], galleries, progress=progress, cancel=cancel)
        gallery, entry_name = backend.metadata.get("gallery"), backend.metadata.get("name", backend.name)
        if not gallery:
            uri = backend.metadata.get("uri")
            if not uri:
                raise BadRequest(f"backend {name!r} was not installed from a gallery or URI; nothing to upgrade from")
            return self.install_uri(uri, backend.name, backend.alias, progress=progress, cancel=cancel)
        entry = galleries.find(f"{gallery}@{entry_name}", force=True)
        entry = entry.model_copy(update={"alias": backend.alias or entry.alias})
        return self.install_entry(entry, galleries, force=True, progress=progress, cancel=cancel)


def default_name(uri: str) -> str:
    """A backend name from a URI: a dir's or file's base name; OCI refs need an explicit name."""
    if oci.is_oci_reference(uri):
        raise BadRequest(f"a name is required to install the OCI image {uri}", param="name")
    path = uri.removeprefix("ocifile://").removeprefix("file://").rstrip("/")
    base = os.path.basename(urlparse(path).path if "://" in path else path)
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base
