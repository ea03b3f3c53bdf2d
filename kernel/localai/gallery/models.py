"""The model gallery: install models by gallery name or URI into the models directory.

An install resolves the entry, fetches its base config (``url``) or takes ``config_file``,
deep-merges ``overrides`` (the entry's, then the request's), downloads every file (verified,
resumable: see :mod:`localai.gallery.download`), writes ``<models>/<name>.yaml`` last and
atomically, records ``._gallery_<name>.yaml`` for delete, and installs the config's backend
from the backend galleries when no plugin provides it.
"""

from __future__ import annotations

import copy
import importlib.resources
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import trust
from ..errors import APIError, BadRequest, NotFound
from ..models.config import ModelConfig
from ..models.registry import describe_validation_error
from ..settings import Settings
from . import download, oci
from .index import Galleries, GallerySource, parse_gallery_list, read_url

log = logging.getLogger("localai.models.gallery")

# the default model gallery ships inside the package (a wheel install has no source checkout)
DEFAULT_MODEL_GALLERY = Path(str(importlib.resources.files("localai") / "galleries" / "models.yaml"))
RECORD_PREFIX = "._gallery_"

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


class ModelFile(BaseModel):
    filename: str
    uri: str
    sha256: str = ""


class ModelEntry(BaseModel):
    """One model in a gallery (LocalAI's GalleryModel)."""

    model_config = ConfigDict(extra="allow")

    name: str
    url: str = ""
    description: str = ""
    license: str = ""
    icon: str = ""
    tags: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    files: list[ModelFile] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    config_file: str | dict[str, Any] | None = None
    prompt_templates: list[dict[str, str]] = Field(default_factory=list)
    gallery: str = ""

    @field_validator("tags", "urls", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [] if value is None else [value] if isinstance(value, str) else value

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"config_file", "prompt_templates"})


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``: mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def as_mapping(config_file: str | dict | None, where: str) -> dict[str, Any]:
    if config_file is None or config_file == "":
        return {}
    if isinstance(config_file, dict):
        return config_file
    try:
        value = yaml.safe_load(config_file)
    except yaml.YAMLError as exc:
        raise BadRequest(f"{where}: config_file is not valid YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: config_file must be a YAML mapping")
    return value


def file_safe(name: str) -> str:
    return name.replace("/", "__")


def model_sources(settings: Settings, host) -> list[GallerySource]:
    """``LOCALAI_GALLERIES`` (else the default gallery), then plugin sources of type "models"."""
    configured = parse_gallery_list(os.environ.get("LOCALAI_GALLERIES") or os.environ.get("GALLERIES"),
                                    "LOCALAI_GALLERIES")
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
        self.galleries = Galleries(model_sources(settings, host), ModelEntry, kind="model")

    @property
    def models_path(self) -> Path:
        return Path(self.settings.models_path)

    # -- what is there --------------------------------------------------------------------

    def installed_names(self) -> set[str]:
        path = self.models_path
        if not path.is_dir():
            return set()
        return {p.stem for p in path.glob("*.yaml") if not p.name.startswith(".")}

    def available(self) -> list[dict[str, Any]]:
        installed = self.installed_names()
        return [{**entry.public(), "installed": file_safe(entry.name) in installed}
                for entry in self.galleries.entries()]

    # -- install --------------------------------------------------------------------------

    def resolve(self, id_or_uri: str | None, url: str | None = None) -> ModelEntry:
        """The gallery entry for ``id`` (``name`` or ``gallery@name``), or an entry built from a URI."""
        if url:
            return self.entry_from_url(url)
        if not id_or_uri:
            raise BadRequest("give the model to install as 'id' (a gallery name) or 'url'", param="id")
        if looks_like_model_uri(id_or_uri):
            return self.entry_from_uri(id_or_uri)
        return self.galleries.find(id_or_uri)

    def entry_from_url(self, url: str) -> ModelEntry:
        """A YAML URL: a gallery-style entry (with files/config_file) or a plain model config."""
        try:
            data = yaml.safe_load(fetch_text(url))
        except download.DownloadError as exc:
            raise BadRequest(f"cannot fetch model config {url}: {exc}") from None
        except yaml.YAMLError as exc:
            raise BadRequest(f"{url} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not data.get("name"):
            raise BadRequest(f"{url} must be a YAML mapping with a 'name'")
        if "config_file" in data or "files" in data or "overrides" in data:
            return ModelEntry.model_validate({**data, "url": ""})
        return ModelEntry(name=data["name"], config_file=data)

    def entry_from_uri(self, uri: str) -> ModelEntry:
        """A bare model file URI (hf://, https://, pypi://, oci://, file://): one file, a guessed backend."""
        base = os.path.basename(urlparse(uri).path.rstrip("/")) or "model"
        stem = Path(base).stem if Path(base).suffix else base
        backend = BACKEND_BY_EXTENSION.get(Path(base).suffix.lower(), "")
        if uri.endswith((".yaml", ".yml")):
            return self.entry_from_url(uri)
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
        if url:
            trust.check_local_uri(url, local_roots, "url")
        if id_or_uri and looks_like_model_uri(id_or_uri):
            trust.check_local_uri(id_or_uri, local_roots, "id")
        trust.check_config(overrides or {}, "overrides")

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
                cancel: threading.Event | None = None, local_roots: Sequence[Path] | None = ()) -> str:
        """Install a model; returns its name. Nothing is written until every file is in place.

        Every config is checked against :mod:`localai.trust` (galleries and the API may not set
        operator-only fields). ``local_roots`` limits which local files a request may name: none by
        default (API callers pass the operator's ``--allow-local-urls``); the CLI passes None (any).
        """
        entry = self.resolve(id_or_uri, url)
        self.check_entry(entry, overrides, local_roots)
        base: dict[str, Any] = {}
        files = list(entry.files)
        templates = list(entry.prompt_templates)
        if entry.url:
            try:
                base = yaml.safe_load(fetch_text(entry.url)) or {}
            except (download.DownloadError, yaml.YAMLError) as exc:
                raise APIError(f"cannot fetch the base config of {entry.name} from {entry.url}: {exc}",
                               status=502, code="gallery_unreachable") from None
            base_files = [ModelFile.model_validate(f) for f in base.get("files") or []]
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
        try:
            targets = [(f, download.safe_target(root, f.filename)) for f in files]
        except download.DownloadError as exc:
            raise BadRequest(f"{entry.name}: {exc}", code="unsafe_path") from None
        total = len(targets)
        for index, (spec, target) in enumerate(targets):
            target.parent.mkdir(parents=True, exist_ok=True)

            def file_progress(done: int, size: int, index=index) -> None:
                if progress:
                    progress(done + index * max(size, 1), max(size, 1) * total)

            log.info("downloading %s for %s", spec.filename, model_name)
            try:
                download.download_file(spec.uri, target, sha256=spec.sha256 or None, progress=file_progress,
                                       cancel=cancel)
            except download.DownloadError as exc:
                raise APIError(f"installing {model_name} failed: {exc}", status=502, code="download_failed") from None
        for template in templates:
            if template.get("name") and "content" in template:
                tmpl = download.safe_target(root, f"{template['name']}.tmpl")
                write_atomic(tmpl, template["content"])
        record = {"name": model_name, "gallery": entry.gallery, "entry": entry.name,
                  "files": [f.filename for f in files]}
        write_atomic(root / f"{RECORD_PREFIX}{model_name}.yaml", yaml.safe_dump(record, sort_keys=False))
        write_atomic(root / f"{model_name}.yaml", yaml.safe_dump(config, sort_keys=False))
        if self.registry is not None:
            self.registry.refresh(force=True)
        self.ensure_backend(validated)
        return model_name

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

    def delete(self, name: str) -> list[str]:
        """Remove a model's config, gallery record and files no other model uses."""
        root = self.models_path
        config = root / f"{file_safe(name)}.yaml"
        if not config.is_file():
            raise NotFound(f"model {name!r} is not installed in {root}", code="model_not_found")
        record_path = root / f"{RECORD_PREFIX}{file_safe(name)}.yaml"
        record = read_yaml(record_path)
        others = set()
        for other in root.glob(f"{RECORD_PREFIX}*.yaml"):
            if other != record_path:
                others.update(read_yaml(other).get("files") or [])
        removed = [config.name]
        config.unlink()
        record_path.unlink(missing_ok=True)
        for filename in record.get("files") or []:
            if filename in others:
                continue
            try:
                target = download.safe_target(root, filename)
            except download.DownloadError:
                continue
            if target.is_file():
                target.unlink()
                removed.append(filename)
        if self.registry is not None:
            self.registry.refresh(force=True)
        return removed


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def looks_like_model_uri(value: str) -> bool:
    return "://" in value or value.startswith(("/", "./", "github:")) or (
        oci.is_oci_reference(value) and not os.path.exists(value))


def fetch_text(uri: str) -> str:
    """A small text file (a gallery or config YAML) from any URI the downloader resolves."""
    try:
        return read_url(download.resolve_uri(uri)).decode("utf-8")
    except Exception as exc:  # network, file system, decoding: all reported the same way
        raise download.DownloadError(f"{uri}: {type(exc).__name__}: {exc}") from None
