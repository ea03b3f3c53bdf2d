"""Where a model config came from: the operator, or an install (the API, a gallery, an Ollama pull).

Installs record what they create in a ledger kept in the server's own state directory
(``LOCALAI_DATA_PATH``, default ``<models>/.localai-data``, under ``installs/<model>.json``), which
no install can write: installs never write dot-dirs, dot-files or server state. A config file in
the models directory is install-provenance when a record names it (as its config or as one of
its files); every other YAML there is the operator's. Older installs left ``._gallery_<name>.yaml``
records in the models directory: their configs count as installs too, but the files they list are
not trusted as the install's own (such records could claim the operator's files).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger("localai.models.provenance")

OPERATOR = "operator"
INSTALL = "install"
LEGACY_PREFIX = "._gallery_"


def default_data_path(models_path: Path, data_path: Path | None = None) -> Path:
    """The server's state directory (``Settings.state_path``; shared with the Responses store)."""
    return Path(data_path or Path(models_path) / ".localai-data")


def norm(rel: str) -> str:
    """A models-dir relative path in one spelling (``a/./b`` and ``a/b`` are the same file)."""
    return os.path.normpath(str(rel).replace("\\", "/")).replace(os.sep, "/")


@dataclass
class InstallRecord:
    """What one install created: its config and its files (paths relative to the models dir)."""

    name: str
    config: str
    files: list[str] = field(default_factory=list)
    gallery: str = ""
    entry: str = ""
    legacy: bool = False


class Ledger:
    """The install records; one JSON file per model, written atomically."""

    def __init__(self, directory: Path, models_path: Path):
        self.directory = Path(directory) / "installs"
        self.models_path = Path(models_path)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
            raise ValueError(f"invalid model name for an install record: {name!r}")
        return self.directory / f"{name}.json"

    def records(self) -> dict[str, InstallRecord]:
        """Every record by model name: the ledger's, then legacy ones for names it does not have."""
        found: dict[str, InstallRecord] = {}
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else ():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                record = InstallRecord(name=str(data["name"]), config=norm(data["config"]),
                                       files=[norm(f) for f in data.get("files") or []],
                                       gallery=str(data.get("gallery") or ""), entry=str(data.get("entry") or ""))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable install record %s: %s", path, exc)
                continue
            found[record.name] = record
        for path in sorted(self.models_path.glob(f"{LEGACY_PREFIX}*.yaml")) if self.models_path.is_dir() else ():
            name = path.name[len(LEGACY_PREFIX):-len(".yaml")]
            if name in found:
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                files = [norm(f) for f in data.get("files") or [] if isinstance(f, str)]
            except (OSError, yaml.YAMLError, AttributeError):
                files = []
            found[name] = InstallRecord(name=name, config=f"{name}.yaml", files=files, legacy=True)
        return found

    def get(self, name: str) -> InstallRecord | None:
        return self.records().get(name)

    def save(self, record: InstallRecord) -> None:
        path = self._path(record.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(record).items() if k != "legacy"}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, path)

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        (self.models_path / f"{LEGACY_PREFIX}{name}.yaml").unlink(missing_ok=True)

    def owners(self) -> dict[str, set[str]]:
        """File → the models whose installs created or share it (legacy records own nothing)."""
        result: dict[str, set[str]] = {}
        for record in self.records().values():
            for rel in () if record.legacy else record.files:
                result.setdefault(rel, set()).add(record.name)
        return result

    def install_paths(self) -> set[str]:
        """Every models-dir path an install created: configs and downloaded files."""
        paths: set[str] = set()
        for record in self.records().values():
            paths.add(record.config)
            paths.update(record.files)
        return paths

    def stamp(self) -> tuple:
        """Changes whenever a record is written or removed (for the registry's re-read check)."""
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.directory.glob("*.json")))
        except OSError:
            return ()
