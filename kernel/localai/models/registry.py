"""ModelRegistry: the model configs from the models directory and from plugins.

A model answers to its ``name`` and to its ``aliases:``; with a server-wide ``fallback`` (off by
default) :meth:`ModelRegistry.resolve` answers any other name with that model.

Each config carries its provenance (:mod:`.provenance`): the operator's (plugin configs, YAML the
operator put in the models directory) or an install's (any YAML an install's ledger record names).
An install's config is held to the operator-only rules of :mod:`localai.trust` whenever it is
read, however it got onto disk; one that breaks them is reported broken and never served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from ..errors import APIError
from ..trust import check_config
from .config import ModelConfig
from .provenance import INSTALL, OPERATOR, Ledger, default_data_path

log = logging.getLogger("localai.models")


@dataclass(frozen=True)
class BrokenConfig:
    """A config that could not be read; reported, never fatal."""

    source: str
    error: str


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line summary of a pydantic error: ``field: message; ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "config"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


class ModelRegistry:
    """Knows every model config; re-reads the models directory when it changes."""

    def __init__(self, models_path: Path, plugin_configs: Iterable[tuple[str, dict[str, Any]]] = (),
                 ledger: Ledger | None = None, data_path: Path | None = None, fallback: str = ""):
        self.models_path = models_path
        self.fallback = fallback
        self._fallen_back: set[str] = set()  # names already logged as answered by the fallback
        self._aliases: dict[str, str] = {}
        self.ledger = ledger or Ledger(default_data_path(models_path, data_path), models_path)
        self._plugin_configs = list(plugin_configs)
        self._configs: dict[str, ModelConfig] = {}
        self.broken: list[BrokenConfig] = []
        self._stamp: tuple | None = None
        self.refresh(force=True)

    def _directory_stamp(self) -> tuple:
        try:
            entries = sorted(self.models_path.iterdir())
        except FileNotFoundError:
            return (), self.ledger.stamp()
        stamp = []
        for path in entries:
            if path.suffix in (".yaml", ".yml") and not path.name.startswith("."):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                stamp.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(stamp), self.ledger.stamp()

    def refresh(self, force: bool = False) -> bool:
        """Re-read configs if the directory changed; returns True when it re-read."""
        stamp = self._directory_stamp()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        configs: dict[str, ModelConfig] = {}
        broken: list[BrokenConfig] = []
        for plugin, raw in self._plugin_configs:
            self._add(configs, broken, raw, f"plugin:{plugin}")
        installed = self.ledger.install_paths()
        for name, _, _ in stamp[0]:
            path = self.models_path / name
            provenance = INSTALL if name in installed else OPERATOR
            try:
                documents = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                broken.append(BrokenConfig(str(path), f"cannot read YAML: {exc}"))
                continue
            items = documents if isinstance(documents, list) else [documents]
            for raw in items:
                self._add(configs, broken, raw, str(path), provenance)
        for item in broken:
            log.error("model config %s is broken: %s", item.source, item.error)
        self._configs, self.broken = configs, broken
        self._aliases = self._collect_aliases(configs)
        return True

    @staticmethod
    def _collect_aliases(configs: dict[str, ModelConfig]) -> dict[str, str]:
        """alias → model name; an alias that is another model's name, or another model's alias too,
        is logged and ignored."""
        aliases: dict[str, str] = {}
        for config in sorted(configs.values(), key=lambda c: c.name):
            for alias in config.aliases:
                if alias == config.name:
                    continue
                owner = alias if alias in configs else aliases.get(alias)
                if owner is not None and owner != config.name:
                    log.error("model %r: alias %r ignored, it already names model %r (%s)", config.name, alias,
                              owner, config.source)
                    continue
                aliases[alias] = config.name
        return aliases

    @staticmethod
    def _add(configs: dict, broken: list, raw: Any, source: str, provenance: str = OPERATOR) -> None:
        if not isinstance(raw, dict):
            broken.append(BrokenConfig(source, "a model config must be a mapping with at least 'name'"))
            return
        if provenance == INSTALL:
            try:
                check_config(raw, source)
            except APIError as exc:
                broken.append(BrokenConfig(source, f"installed config refused: {exc.message}"))
                return
        try:
            config = ModelConfig.model_validate({**raw, "source": source, "provenance": provenance})
        except ValidationError as exc:
            broken.append(BrokenConfig(source, describe_validation_error(exc)))
            return
        previous = configs.get(config.name)
        if previous is not None and previous.provenance == INSTALL and provenance == OPERATOR:
            # the operator's config of that name wins over an install's
            broken.append(BrokenConfig(previous.source, f"duplicate model name {config.name!r} (also in {source})"))
        elif previous is not None and not previous.source.startswith("plugin:"):
            broken.append(BrokenConfig(source, f"duplicate model name {config.name!r} (also in {previous.source})"))
            return
        configs[config.name] = config

    def _lookup(self, name: str) -> ModelConfig | None:
        config = self._configs.get(name)
        if config is None and name in self._aliases:
            config = self._configs.get(self._aliases[name])
        return config

    def get(self, name: str) -> ModelConfig | None:
        """The config called ``name`` (or aliased so), re-reading the directory once if it is unknown."""
        config = self._lookup(name)
        if config is None and self.refresh():
            config = self._lookup(name)
        return config

    def resolve(self, name: str) -> ModelConfig | None:
        """:meth:`get`, else the fallback model's config (each such name logged once), else None."""
        config = self.get(name)
        if config is not None or not self.fallback:
            return config
        config = self.get(self.fallback)
        if name not in self._fallen_back and len(self._fallen_back) < 1000:  # bounded: names come from clients
            self._fallen_back.add(name)
            if config is None:
                log.error("unknown model %r: the fallback model %r is not installed either", name, self.fallback)
            else:
                log.info("unknown model %r answered by the fallback model %r", name, config.name)
        return config

    def all(self) -> list[ModelConfig]:
        """Every valid config, sorted by name (re-reads the directory if it changed)."""
        self.refresh()
        return sorted(self._configs.values(), key=lambda c: c.name)
