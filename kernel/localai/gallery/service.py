"""BackendGallery: what the API and the CLI use — sources, store, jobs, pre-install."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import BadRequest
from ..host import PluginHost
from ..settings import Settings
from . import oci
from .index import DEFAULT_BACKEND_GALLERIES, Galleries, GallerySource, parse_gallery_list
from .jobs import Job, JobManager
from .store import BackendStore, InstalledBackend
from .uris import Remotes

log = logging.getLogger("localai.gallery")


def gallery_sources(settings: Settings, host: PluginHost | None) -> list[GallerySource]:
    """``LOCALAI_BACKEND_GALLERIES`` (else the default gallery), then plugin sources."""
    configured = parse_gallery_list(settings.backend_galleries)
    sources = configured if configured is not None else [GallerySource(**g) for g in DEFAULT_BACKEND_GALLERIES]
    if host is not None:
        for item in host.pm.hook.localai_gallery_sources(settings=settings):
            for source in item or ():
                kind = source.get("type", "backends") if isinstance(source, dict) else "backends"
                if isinstance(source, dict) and source.get("url") and kind == "backends":
                    sources.append(GallerySource(str(source.get("name") or source["url"]), str(source["url"])))
    return sources


def looks_like_uri(value: str) -> bool:
    """True for anything an installer takes directly rather than a gallery name."""
    return (
        "://" in value
        or value.startswith(("/", "./", "../", "~"))
        or oci.is_oci_reference(value)
    )


class BackendGallery:
    """Installs, deletes and upgrades backends, and keeps the plugin host's list current."""

    def __init__(self, settings: Settings, host: PluginHost | None = None, jobs: JobManager | None = None):
        self.settings = settings
        self.host = host
        self.galleries = Galleries(gallery_sources(settings, host))
        max_bytes = settings.max_backend_bytes or None
        self.store = BackendStore(settings.backends_path, settings.backends_system_path, max_bytes=max_bytes,
                                  remotes=Remotes.of(settings),
                                  force_capability=settings.force_meta_backend_capability,
                                  capability_run_file=settings.force_meta_backend_capability_run_file)
        self.jobs = jobs or JobManager()

    # -- blocking operations (threads, CLI) ----------------------------------------------

    def install(self, id_or_uri: str, *, name: str | None = None, alias: str = "", force: bool = False,
                progress=None, cancel=None) -> InstalledBackend:
        """Install a gallery backend (``name`` or ``gallery@name``) or a URI."""
        if looks_like_uri(id_or_uri):
            existing = self.store.get(name) if name else None
            if existing and existing.runnable and not force:
                return existing
            return self.store.install_uri(id_or_uri, name, alias, progress=progress, cancel=cancel)
        if name or alias:
            raise BadRequest("name and alias can only be given when installing from a URI")
        entry = self.galleries.find(id_or_uri)
        return self.store.install_entry(entry, self.galleries, force=force, progress=progress, cancel=cancel)

    def refresh(self) -> None:
        if self.host is not None:
            self.host.refresh_backends()

    # -- jobs (API) -----------------------------------------------------------------------

    def _after(self, job: Job) -> None:
        self.refresh()

    def submit_install(self, id_or_uri: str, *, name: str | None = None, alias: str = "",
                       force: bool = False) -> Job:
        def work(job: Job, progress) -> str:
            backend = self.install(id_or_uri, name=name, alias=alias, force=force, progress=progress,
                                   cancel=job.cancel_event)
            return f"backend {backend.name} installed"

        return self.jobs.submit("install", name or id_or_uri, work, self._after)

    def submit_delete(self, name: str) -> Job:
        def work(job: Job, progress) -> str:
            removed = self.store.delete(name)
            return f"deleted {', '.join(removed)}"

        return self.jobs.submit("delete", name, work, self._after)

    def submit_upgrade(self, name: str) -> Job:
        def work(job: Job, progress) -> str:
            backend = self.store.upgrade(name, self.galleries, progress=progress, cancel=job.cancel_event)
            return f"backend {backend.name} upgraded"

        return self.jobs.submit("upgrade", name, work, self._after)

    async def preinstall(self, names: list[str]) -> None:
        """Install ``LOCALAI_EXTERNAL_BACKENDS`` at start-up; failures are logged, not fatal."""
        for item in names:
            try:
                backend = await asyncio.to_thread(self.install, item)
                log.info("pre-installed backend %s", backend.name)
            except Exception as exc:  # noqa: BLE001 - the server must still serve
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                log.error("could not pre-install backend %s: %s", item, message)
        self.refresh()

    def available(self) -> list[dict[str, Any]]:
        """Every gallery entry with an ``installed`` flag."""
        installed = {b.name for b in self.store.installed()}
        return [{**entry.public(), "installed": entry.name in installed} for entry in self.galleries.entries()]
