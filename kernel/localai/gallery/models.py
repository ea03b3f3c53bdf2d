"""The model gallery: install models by gallery name or URI into the models directory.

An install resolves the entry, fetches its base config (``url``) or takes ``config_file``,
deep-merges ``overrides`` (the entry's, then the request's), records what it will create in the
install ledger, downloads every file (verified, resumable: see :mod:`localai.gallery.download`),
writes ``<models>/<name>.yaml`` last and atomically, and installs the config's backend from the
backend galleries when no plugin provides it. Where an install may write, and what a delete
removes: :mod:`localai.gallery.placement`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from .. import net_policy, trust
from ..errors import APIError, BadRequest
from ..models.config import ModelConfig
from ..models.provenance import InstallRecord, Ledger
from ..models.registry import describe_validation_error
from ..net_policy import Guard
from ..settings import Settings
from . import download, placement
from .entries import ModelEntry, ModelFile, as_mapping, deep_merge, file_safe
from .index import Galleries, GallerySource, parse_gallery_list, read_url

log = logging.getLogger("localai.models.gallery")

# the default model gallery ships inside the package (a wheel install has no source checkout)
DEFAULT_MODEL_GALLERY = Path(str(importlib.resources.files("localai") / "galleries" / "models.yaml"))

# which pip plugin provides a backend, for the "install this plugin" hint
BACKEND_PLUGINS = {
    "llama-cpp": "localai-plugin-xllamacpp",
    "llama-cpp-python": "localai-plugin-llama-cpp",
    "faster-whisper": "localai-plugin-whisper",
    "piper": "localai-plugin-piper",
    "sentence-transformers": "localai-plugin-sentence-transformers",
    "diffusers": "localai-plugin-diffusers",
}

# a model file's extension → the backend that loads it, for installs from a bare file URI
BACKEND_BY_EXTENSION = {".gguf": "llama-cpp", ".onnx": "piper", ".safetensors": "diffusers", ".ckpt": "diffusers"}

Progress = Callable[[int, int], None]


def model_sources(settings: Settings, host) -> list[GallerySource]:
    """``LOCALAI_GALLERIES`` (else the default gallery), then plugin sources of type "models"."""
    configured = parse_gallery_list(settings.galleries, "LOCALAI_GALLERIES")
    sources = configured if configured is not None else (
        [GallerySource("localai-python", str(DEFAULT_MODEL_GALLERY))] if DEFAULT_MODEL_GALLERY.is_file() else [])
    if host is not None:
        for item in host.pm.hook.localai_gallery_sources(settings=settings):
            for source in item or ():
                if isinstance(source, dict) and source.get("url") and source.get("type") == "models":
                    sources.append(GallerySource(str(source.get("name") or source["url"]), str(source["url"])))
    return sources


class ModelGallery:
    """Installs and deletes models; blocking methods, run in worker threads by the API."""

    def __init__(self, settings: Settings, host=None, backends=None, registry=None):
        self.settings = settings
        self.host = host
        self.backends = backends  # BackendGallery, for installing a model's backend
        self.registry = registry
        self.ledger = registry.ledger if registry is not None else Ledger(
            settings.state_path, settings.models_path)
        self.galleries = Galleries(model_sources(settings, host), ModelEntry, kind="model")
        self.remotes = download.Remotes.of(settings)
        self._lock = threading.Lock()  # ledger decisions (plan, record, delete) one at a time

    @property
    def models_path(self) -> Path:
        return Path(self.settings.models_path)

    # -- what is there --------------------------------------------------------------------

    def installed_names(self) -> set[str]:
        """Models an install created (the operator's own configs are not "installed")."""
        return {name for name, record in self.ledger.records().items()
                if (self.models_path / record.config).is_file()}

    def state_dirs(self) -> list[Path]:
        """The server's own state: no install may write there."""
        s = self.settings
        dirs = [self.ledger.directory.parent, s.kv_cache_path, s.backends_path, s.backends_system_path,
                s.generated_content_path, s.upload_path]
        return [Path(d) for d in dirs if d]

    def placement(self, model_name: str) -> placement.Placement:
        return placement.Placement(self.models_path, self.ledger, self.state_dirs(), model_name)

    def check_name(self, name: str, force: bool = False) -> None:
        """409 for an installed model without ``force``; 403 for the operator's (see placement)."""
        placement.check_name(file_safe(name), self.models_path, self.ledger, self.registry, force)

    def check_files(self, entry: ModelEntry, name: str) -> None:
        """The entry's own ``files[]`` targets (a request-brought entry is refused before its job)."""
        place = self.placement(file_safe(name))
        for index, spec in enumerate(entry.files):
            place.target(spec.filename, f"files[{index}].filename")

    def available(self) -> list[dict[str, Any]]:
        installed = self.installed_names()
        return [{**entry.public(), "installed": file_safe(entry.name) in installed}
                for entry in self.galleries.entries()]

    # -- install --------------------------------------------------------------------------

    def resolve(self, id_or_uri: str | None, url: str | None = None, guard: Guard | None = None) -> ModelEntry:
        """The gallery entry for ``id`` (``name`` or ``gallery@name``), or an entry built from a URI
        (fetched under ``guard``: see :meth:`url_guard`)."""
        if url:
            return self.entry_from_url(url, guard)
        if not id_or_uri:
            raise BadRequest("give the model to install as 'id' (a gallery name) or 'url'", param="id")
        if looks_like_model_uri(id_or_uri):
            return self.entry_from_uri(id_or_uri, guard)
        return self.galleries.find(id_or_uri)

    def entry_from_url(self, url: str, guard: Guard | None = None) -> ModelEntry:
        """A YAML URL: a gallery-style entry (with files/config_file) or a plain model config.
        Errors name the URL and a failure class, never what was fetched."""
        try:
            data = yaml.safe_load(fetch_text(url, guard, self.remotes.hf_endpoint))
        except download.DownloadError as exc:
            raise BadRequest(f"cannot fetch model config: {exc}", code="fetch_failed") from None
        except yaml.YAMLError:
            raise BadRequest(f"{url}: not valid YAML", code="fetch_failed") from None
        if not isinstance(data, dict) or not data.get("name"):
            raise BadRequest(f"{url} must be a YAML mapping with a 'name'")
        try:
            if "config_file" in data or "files" in data or "overrides" in data:
                return ModelEntry.model_validate({**data, "url": ""})
            return ModelEntry(name=data["name"], config_file=data)
        except ValidationError as exc:  # pydantic's own text would quote the values
            raise BadRequest(f"{url}: not a valid model entry: {describe_validation_error(exc)}",
                             code="fetch_failed") from None

    def entry_from_uri(self, uri: str, guard: Guard | None = None) -> ModelEntry:
        """A bare model file URI (hf://, https://, pypi://, oci://, file://): one file, a guessed backend."""
        base = os.path.basename(urlparse(uri).path.rstrip("/")) or "model"
        stem = Path(base).stem if Path(base).suffix else base
        backend = BACKEND_BY_EXTENSION.get(Path(base).suffix.lower(), "")
        if uri.endswith((".yaml", ".yml")):
            return self.entry_from_url(uri, guard)
        config = {"parameters": {"model": base}}
        if backend:
            config["backend"] = backend
        if backend == "llama-cpp":
            config["template"] = {"use_tokenizer_template": True}
        return ModelEntry(name=stem.lower(), config_file=config, files=[ModelFile(filename=base, uri=uri)])

    def check_request(self, id_or_uri: str | None, url: str | None, overrides: dict | None,
                      local_roots: Sequence[Path]) -> None:
        """What an API request itself names: local files only under the allowed roots, and no
        operator-only field in its overrides (see :mod:`localai.trust`)."""
        guard = self.url_guard(local_roots)
        for param, uri in (("url", url), ("id", id_or_uri if id_or_uri and looks_like_model_uri(id_or_uri) else None)):
            if uri:
                trust.check_local_uri(uri, local_roots, param)
                check_network_uri(uri, guard, param, self.remotes.hf_endpoint)
        trust.check_config(overrides or {}, "overrides")

    def url_guard(self, local_roots: Sequence[Path] | None) -> Guard | None:
        """The address check for what an API request fetches (:mod:`localai.net_policy`): none for
        the operator (the CLI passes ``local_roots=None``) or with ``--allow-private-urls``.
        ``HF_ENDPOINT``'s host is the operator's choice and is not checked."""
        if local_roots is None or self.settings.allow_private_urls:
            return None
        return net_policy.url_guard([urlparse(self.remotes.hf_endpoint).hostname or ""])

    def check_entry(self, entry: ModelEntry, overrides: dict | None, local_roots: Sequence[Path] | None) -> None:
        """A resolved entry's own config and files; local files are checked for entries that came
        from the request (not from an operator's gallery) when ``local_roots`` is given."""
        config = deep_merge(as_mapping(entry.config_file, entry.name), entry.overrides)
        trust.check_config(deep_merge(config, overrides or {}), entry.name)
        if local_roots is not None and not entry.gallery:
            for index, spec in enumerate(entry.files):
                trust.check_local_uri(spec.uri, local_roots, f"files[{index}].uri")
            if entry.url:
                trust.check_local_uri(entry.url, local_roots, "url")

    def install(self, id_or_uri: str | None, *, url: str | None = None, name: str | None = None,
                overrides: dict | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, local_roots: Sequence[Path] | None = (),
                force: bool = False) -> str:
        """Install a model; returns its name. Nothing is written until every file is in place.

        Every config is checked against :mod:`localai.trust` (galleries and the API may not set
        operator-only fields). ``local_roots`` limits which local files a request may name: none by
        default (API callers pass the operator's ``--allow-local-urls``); the CLI passes None (any).
        An existing model name is refused unless an install made it and ``force`` is given.
        """
        guard = self.url_guard(local_roots)
        entry = self.resolve(id_or_uri, url, guard)
        guard = None if entry.gallery else guard  # an operator-configured gallery's URLs are the operator's
        self.check_entry(entry, overrides, local_roots)
        base: dict[str, Any] = {}
        files = list(entry.files)
        templates = list(entry.prompt_templates)
        if entry.url:
            try:
                base = yaml.safe_load(fetch_text(entry.url, guard, self.remotes.hf_endpoint)) or {}
            except download.DownloadError as exc:
                raise APIError(f"cannot fetch the base config of {entry.name}: {exc}",
                               status=502, code="gallery_unreachable") from None
            except yaml.YAMLError:
                raise APIError(f"cannot fetch the base config of {entry.name}: {entry.url}: not valid YAML",
                               status=502, code="gallery_unreachable") from None
            try:
                if not isinstance(base, dict):
                    raise APIError(f"the base config of {entry.name} ({entry.url}) must be a YAML mapping",
                                   status=502, code="gallery_unreachable")
                base_files = [ModelFile.model_validate(f) for f in base.get("files") or []]
            except ValidationError as exc:
                raise APIError(f"the base config of {entry.name} ({entry.url}) is invalid: "
                               f"{describe_validation_error(exc)}", status=502, code="gallery_unreachable") from None
            if local_roots is not None and not entry.gallery:
                for index, spec in enumerate(base_files):
                    trust.check_local_uri(spec.uri, local_roots, f"files[{index}].uri")
            files = base_files + files
            templates = list(base.get("prompt_templates") or []) + templates
        config = as_mapping(base.get("config_file") if base else None, entry.name)
        config = deep_merge(config, as_mapping(entry.config_file, entry.name))
        config = deep_merge(config, entry.overrides)
        config = deep_merge(config, overrides or {})
        model_name = file_safe(name or entry.name)
        config["name"] = model_name
        trust.check_config(config, entry.name)
        try:
            validated = ModelConfig.model_validate(config)
        except ValidationError as exc:
            raise BadRequest(f"the config of {entry.name} is invalid: {describe_validation_error(exc)}") from None
        root = self.models_path
        root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            record, targets, shared, templates_at, new_dirs = self._plan(entry, model_name, files, templates, force)
        try:
            self._fetch(model_name, targets, shared, progress, cancel, guard)
            for template, target in templates_at:
                write_atomic(target, template["content"])
            write_atomic(root / record.config, yaml.safe_dump(config, sort_keys=False))
        except BaseException:
            with self._lock:
                self._forget_missing(record, new_dirs)
            raise
        if self.registry is not None:
            self.registry.refresh(force=True)
        self.ensure_backend(validated)
        return model_name

    def _plan(self, entry: ModelEntry, model_name: str, files: list[ModelFile], templates: list[dict],
              force: bool):
        """Check every target, then record them all in the ledger before anything is written."""
        root = self.models_path
        placement.check_name(model_name, root, self.ledger, self.registry, force)
        place = self.placement(model_name)
        targets, shared = [], set()
        for index, spec in enumerate(files):
            where = f"files[{index}].filename"
            rel, target = place.target(spec.filename, where)
            if place.shared(rel) and target.is_file():
                place.check_shared(rel, target, spec.sha256, where)
                shared.add(rel)
            targets.append((spec, rel, target))
        templates_at = []
        for index, template in enumerate(templates):
            if template.get("name") and "content" in template:
                rel, target = place.target(f"{template['name']}.tmpl", f"prompt_templates[{index}].name",
                                           template=True)
                templates_at.append((template, target))
                targets.append((None, rel, target))
        previous = self.ledger.get(model_name)
        owned = set(previous.files) if previous and not previous.legacy else set()
        record = InstallRecord(name=model_name, config=f"{model_name}.yaml", gallery=entry.gallery,
                               entry=entry.name, files=sorted(owned | {rel for _, rel, _ in targets}))
        self.ledger.save(record)
        new_dirs = {d for _, _, target in targets for d in target.parents if d.is_relative_to(root) and not d.exists()}
        return record, [t for t in targets if t[0] is not None], shared, templates_at, new_dirs

    def _fetch(self, model_name: str, targets: list, shared: set[str], progress: Progress | None,
               cancel: threading.Event | None, guard: Guard | None = None) -> None:
        total = len(targets)
        for index, (spec, rel, target) in enumerate(targets):
            if rel in shared:
                continue  # another model's file, checked above: used as it is

            def file_progress(done: int, size: int, index=index) -> None:
                if progress:
                    progress(done + index * max(size, 1), max(size, 1) * total)

            log.info("downloading %s for %s", spec.filename, model_name)
            try:
                download.download_file(spec.uri, target, sha256=spec.sha256 or None, progress=file_progress,
                                       cancel=cancel, guard=guard, remotes=self.remotes)
            except download.DownloadError as exc:
                raise APIError(f"installing {model_name} failed: {exc}", status=502, code="download_failed") from None

    def _forget_missing(self, record: InstallRecord, new_dirs: set[Path]) -> None:
        """After a failed install: keep recording only the files that exist (a retry resumes them),
        and remove the directories it created that stayed empty."""
        root = self.models_path
        for directory in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        record.files = [rel for rel in record.files if os.path.lexists(root / rel)]
        if record.files or os.path.lexists(root / record.config):
            self.ledger.save(record)
        else:
            self.ledger.remove(record.name)

    def ensure_backend(self, config: ModelConfig) -> str:
        """Install the model's backend from the backend galleries when nothing provides it."""
        name = config.backend_name
        if not name or self.host is None or self.host.backend(name) is not None:
            return ""
        if self.backends is not None:
            try:
                installed = self.backends.install(name)
                self.backends.refresh()
                return f"installed backend {installed.name}"
            except APIError as exc:
                log.warning("backend %s of model %s is not installed and could not be installed: %s",
                            name, config.name, exc.message)
        plugin = BACKEND_PLUGINS.get(name)
        hint = f"pip install {plugin}" if plugin else f"local-ai backends install {name}"
        raise APIError(f"model {config.name} was installed, but its backend {name!r} is not available: "
                       f"run `{hint}`", status=424, code="backend_missing")

    # -- delete ---------------------------------------------------------------------------

    def check_delete(self, name: str) -> None:
        """404 for an unknown model, 403 for the operator's: only installs can be deleted."""
        placement.deletable(name, self.ledger, self.registry)

    def delete(self, name: str) -> list[str]:
        """Remove an installed model's config and the files its install created that no other model uses."""
        with self._lock:
            removed = placement.remove(placement.deletable(name, self.ledger, self.registry), self.models_path,
                                       self.ledger, self.registry)
        if self.registry is not None:
            self.registry.refresh(force=True)
        return removed


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def looks_like_model_uri(value: str) -> bool:
    """A URI or a path (local or not as :func:`localai.trust.is_local_uri` says), not a gallery name."""
    return ("://" in value or value.startswith(("/", "./", "../", "~")) or trust.uri_scheme(value) == "file"
            or not trust.is_local_uri(value))


def check_network_uri(uri: str, guard: Guard | None, param: str, hf_endpoint: str = download.HF_DEFAULT) -> None:
    """Refuse at once (400) a remote ``uri`` whose host the guard refuses; the fetch checks again."""
    if guard is None or trust.is_local_uri(uri) or uri.startswith("pypi://"):
        return
    url = download.resolve_uri(uri, hf_endpoint) if "://" in uri else uri
    if not url.startswith(("http://", "https://")):  # an OCI reference: its registry
        url = "https://" + url.removeprefix("oci://").split("/", 1)[0] + "/"
    try:
        guard(url)
    except net_policy.URLNotAllowed as exc:
        raise BadRequest(f"{param}: {exc}", code="url_not_allowed", param=param) from None


def fetch_text(uri: str, guard: Guard | None = None, hf_endpoint: str = download.HF_DEFAULT) -> str:
    """A small text file (a gallery or config YAML) from any URI the downloader resolves (``hf://``
    through ``hf_endpoint``); errors name the URI and a failure class
    (:func:`localai.gallery.index.read_url`)."""
    data = read_url(download.resolve_uri(uri, hf_endpoint), guard)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise download.DownloadError(f"{uri}: not valid YAML", uri=uri) from None
