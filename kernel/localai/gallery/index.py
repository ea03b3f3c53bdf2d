"""Backend gallery indexes: LocalAI's YAML list format, gallery sources, lookup by name.

A gallery is ``{"name", "url"}``; its URL (http(s), ``file://`` or a plain path) serves a
YAML list of entries. YAML anchors and merge keys work (PyYAML's safe loader).

:func:`read_url` reads what :func:`localai.trust.is_local_uri` calls local from disk, and
http(s) with httpx. Its errors name the URL and a failure class (an HTTP status, "could not
fetch", "not found or not readable as a regular file"), never what was fetched.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import trust
from ..errors import ConfigError, NotFound
from ..net_policy import URLNotAllowed
from .uris import DownloadError

log = logging.getLogger("localai.gallery")

DEFAULT_BACKEND_GALLERIES = [
    {"name": "localai", "url": "https://raw.githubusercontent.com/mudler/LocalAI/master/backend/index.yaml"}
]
FETCH_TIMEOUT = 30.0
CACHE_SECONDS = 60.0


class GalleryEntry(BaseModel):
    """One backend in a gallery; meta when it has ``capabilities`` and no ``uri``."""

    model_config = ConfigDict(extra="allow")

    name: str
    uri: str = ""
    alias: str = ""
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    license: str = ""
    urls: list[str] = Field(default_factory=list)
    icon: str = ""
    mirrors: list[str] = Field(default_factory=list)
    version: str = ""
    sha256: str = ""
    capabilities: dict[str, str] = Field(default_factory=dict)
    gallery: str = ""

    @field_validator("tags", "urls", "mirrors", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("version", "alias", "description", "license", "icon", "uri", "sha256", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    @property
    def is_meta(self) -> bool:
        return bool(self.capabilities) and not self.uri

    def public(self) -> dict[str, Any]:
        """The entry as the API shows it."""
        data = self.model_dump()
        data["is_meta"] = self.is_meta
        return data


@dataclass(frozen=True)
class GallerySource:
    name: str
    url: str


@dataclass
class Gallery:
    """A gallery's entries, or why they could not be read."""

    source: GallerySource
    entries: list[GalleryEntry] = field(default_factory=list)
    error: str | None = None


def parse_gallery_list(value: str | None, variable: str = "LOCALAI_BACKEND_GALLERIES") -> list[GallerySource] | None:
    """Parse LocalAI's JSON list of ``{"name", "url"}``; None when unset."""
    if value is None or not value.strip():
        return None
    try:
        items = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{variable} is not valid JSON: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("url") for i in items):
        raise ConfigError(f'{variable} must be a JSON list of {{"name": ..., "url": ...}} objects')
    return [GallerySource(str(i.get("name") or f"gallery{n}"), str(i["url"])) for n, i in enumerate(items)]


MAX_INDEX_BYTES = 64 * 1024 * 1024


def read_local(path: Path, url: str) -> bytes:
    """A regular file of at most MAX_INDEX_BYTES (never a device, FIFO or directory). Every failure
    reads the same, so an error does not tell whether a path exists."""
    try:
        if path.is_file() and path.stat().st_size <= MAX_INDEX_BYTES:
            return path.read_bytes()
        why = "not a regular file of at most 64 MiB"
    except (OSError, ValueError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    log.info("cannot read %s: %s", url, why)  # the operator's log may say why; the client may not
    raise DownloadError(f"{url}: not found or not readable as a regular file", uri=url)


def read_url(url: str, guard: Callable[[str], None] | None = None) -> bytes:
    """Fetch an index or config: a local file (:func:`localai.trust.is_local_uri`) from disk,
    http(s) with httpx; ``guard`` checks every request's URL, redirects included (see
    :mod:`localai.net_policy`). Raises :class:`DownloadError`."""
    if trust.is_local_uri(url):
        return read_local(Path(trust.local_path(url)), url)
    if trust.uri_scheme(url) not in ("http", "https"):
        raise DownloadError(f"{url}: not an http(s) URL or a local file", uri=url)
    hooks = {"request": [lambda request: guard(str(request.url))]} if guard else {}
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True, event_hooks=hooks) as client, \
                client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise DownloadError(f"{url}: HTTP {response.status_code}", uri=url)
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_INDEX_BYTES:
                    raise DownloadError(f"{url}: larger than {MAX_INDEX_BYTES} bytes", uri=url)
            return bytes(data)
    except URLNotAllowed as exc:
        raise DownloadError(str(exc), uri=url) from None
    except httpx.HTTPError as exc:
        log.info("cannot fetch %s: %s: %s", url, type(exc).__name__, exc)
        raise DownloadError(f"{url}: could not fetch", uri=url) from None


def parse_index(data: bytes, gallery: str, entry_type: type[BaseModel] = GalleryEntry) -> list:
    """Parse a gallery YAML list; entries that are not valid are logged and skipped."""
    documents = yaml.safe_load(data)
    if documents is None:
        return []
    if not isinstance(documents, list):
        raise ValueError("a gallery must be a YAML list of entries")
    entries = []
    for item in documents:
        if not isinstance(item, dict):
            continue
        try:
            entries.append(entry_type.model_validate({**item, "gallery": gallery}))
        except ValidationError as exc:
            log.warning("gallery %s: skipping invalid entry %r: %s", gallery, item.get("name"), exc.errors()[0]["msg"])
    return entries


def load_gallery(source: GallerySource, entry_type: type[BaseModel] = GalleryEntry, kind: str = "backend") -> Gallery:
    """A gallery's entries, or an error naming its URL and a failure class (never its content)."""
    try:
        return Gallery(source, parse_index(read_url(source.url), source.name, entry_type))
    except DownloadError as exc:
        error = str(exc)
    except (yaml.YAMLError, UnicodeError):
        error = f"{source.url}: not valid YAML"
    except ValueError as exc:  # parse_index's own messages
        error = f"{source.url}: {exc}"
    except Exception as exc:  # an unreachable or malformed gallery must not hide the others
        log.info("gallery %s: %s: %s", source.url, type(exc).__name__, exc)
        error = f"{source.url}: could not be read ({type(exc).__name__})"
    log.error("%s gallery %s is unavailable: %s", kind, source.name, error)
    return Gallery(source, error=error)


class Galleries:
    """Configured galleries (of backends, or of models), fetched on demand and cached briefly."""

    def __init__(self, sources: Iterable[GallerySource], entry_type: type[BaseModel] = GalleryEntry,
                 kind: str = "backend"):
        self.sources = list(sources)
        self.entry_type = entry_type
        self.kind = kind
        self._cache: list[Gallery] | None = None
        self._loaded_at = 0.0

    def load(self, force: bool = False) -> list[Gallery]:
        if force or self._cache is None or time.monotonic() - self._loaded_at > CACHE_SECONDS:
            self._cache = [load_gallery(source, self.entry_type, self.kind) for source in self.sources]
            self._loaded_at = time.monotonic()
        return self._cache

    def entries(self, force: bool = False) -> list:
        return [entry for gallery in self.load(force) for entry in gallery.entries]

    def find(self, name: str, force: bool = False):
        """Look up ``name`` or ``gallery@name`` (case-insensitive)."""
        gallery_name, _, entry_name = name.rpartition("@")
        wanted = entry_name.strip().lower()
        for entry in self.entries(force):
            if entry.name.lower() == wanted and (not gallery_name or entry.gallery.lower() == gallery_name.lower()):
                return entry
        errors = [f"{g.source.name}: {g.error}" for g in self.load() if g.error]
        hint = f" (unavailable galleries: {'; '.join(errors)})" if errors else ""
        raise NotFound(f"{self.kind} {name!r} was not found in any gallery{hint}", code=f"{self.kind}_not_found")

    def sibling(self, entry: GalleryEntry, name: str) -> GalleryEntry:
        """The concrete entry ``name`` a meta entry points at (same gallery first)."""
        try:
            return self.find(f"{entry.gallery}@{name}")
        except NotFound:
            return self.find(name)
