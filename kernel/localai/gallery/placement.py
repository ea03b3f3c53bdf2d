"""Where a model install may write, and what deleting a model removes.

Files an install downloads are data, never configs: an install

- creates files; it replaces only files its own earlier install created (``force``), and reuses a
  file another install created only when it is the same (its ``sha256``, if given, matches);
- never names a config (``*.yaml``, ``*.yml``) or a template (``*.tmpl``) in ``files[]``;
- never writes a dot-file or into a dot-dir (``.localai-data``, ``.kv-cache``, ...) nor into the
  server's state (data, KV cache, backends, generated and upload directories);
- never takes a model name the operator's config (or a plugin's) already has; an install's own
  name only with ``force``.

What an install creates is recorded in the ledger (:mod:`localai.models.provenance`) before the
first byte is written, so a crash cannot leave an unowned file. Deleting a model removes its
config and the files its record lists that no other record lists; the operator's models cannot
be deleted through installs at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import APIError, BadRequest, NotFound
from ..models.provenance import INSTALL, InstallRecord, Ledger, norm
from . import download

CONFIG_SUFFIXES = (".yaml", ".yml")
TEMPLATE_SUFFIX = ".tmpl"
FORCE_HINT = 'ask for "force": true (CLI: --force) to reinstall it'


def name_taken(name: str, why: str) -> APIError:
    return APIError(f"model {name!r} {why}", status=409, type="invalid_request_error", code="model_exists",
                    param="name")


def operator_model(name: str, source: str) -> APIError:
    return APIError(f"model {name!r} is the operator's ({source}), not an install's: it cannot be replaced or "
                    "deleted through the API or a gallery; the operator removes its YAML from the models directory",
                    status=403, type="invalid_request_error", code="operator_model")


class Placement:
    """One install's view of the models directory: which of its files may go where."""

    def __init__(self, root: Path, ledger: Ledger, state_dirs: Iterable[Path], model: str):
        self.root = Path(root)
        self.real_root = os.path.realpath(root)
        self.model = model
        self.owners = ledger.owners()
        inside = (os.path.realpath(d) for d in state_dirs)
        self.state_dirs = [d for d in inside if d.startswith(self.real_root + os.sep)]

    def refuse(self, where: str, filename: str, why: str) -> BadRequest:
        return BadRequest(f"{where} {filename!r} {why}", code="unsafe_path", param=where)

    def target(self, filename: str, where: str, *, template: bool = False) -> tuple[str, Path]:
        """``(relative path, target)`` for a file the install writes, or a 400 saying why not."""
        try:
            target = download.safe_target(self.root, filename)
        except download.DownloadError as exc:
            raise self.refuse(where, filename, f"is not allowed: {exc}") from None
        real = os.path.realpath(target)
        rel = norm(os.path.relpath(real, self.real_root))
        parts = norm(filename).split("/") + rel.split("/")
        if any(part.startswith(".") for part in parts):
            raise self.refuse(where, filename, "is a hidden file or directory: installs may not write dot-files or "
                                               "dot-dirs (the server's state lives there)")
        if any(real == d or real.startswith(d + os.sep) for d in self.state_dirs):
            raise self.refuse(where, filename, "is inside the server's own state (data, KV cache, backends, "
                                               "generated files): installs may not write there")
        suffix = os.path.splitext(rel)[1].lower()
        if suffix in CONFIG_SUFFIXES or (suffix == TEMPLATE_SUFFIX and not template):
            raise self.refuse(where, filename, "is a model config or template: files an install downloads are data, "
                                               "never configs")
        if os.path.lexists(target):
            owners = self.owners.get(rel, set())
            if not owners:
                raise self.refuse(where, filename, "already exists and was not created by an install: an install "
                                                   "may not replace or claim it")
            if template and owners != {self.model}:
                raise self.refuse(where, filename, f"belongs to model {sorted(owners)[0]!r}")
        return rel, target

    def shared(self, rel: str) -> list[str]:
        """Other models whose installs use ``rel`` (then it is reused, never replaced)."""
        return sorted(self.owners.get(rel, set()) - {self.model})

    def check_shared(self, rel: str, target: Path, sha256: str, where: str) -> None:
        """A file another install created is reused only as it is: a different ``sha256`` is refused."""
        want = sha256.strip().lower().removeprefix("sha256:")
        if want and download.file_sha256(target) != want:
            raise self.refuse(where, rel, f"is model {self.shared(rel)[0]!r}'s file with different content: an "
                                          "install may not replace another model's file")


def check_name(name: str, root: Path, ledger: Ledger, registry, force: bool) -> None:
    """Refuse an install under a name the operator uses, or an installed one without ``force``."""
    config = registry.get(name) if registry is not None else None
    if config is not None and config.provenance != INSTALL:
        raise operator_model(name, config.source)
    path = Path(root) / f"{name}.yaml"
    on_disk = os.path.lexists(path)
    if on_disk and path.name not in ledger.install_paths():
        raise operator_model(name, str(path))
    if (config is not None or on_disk) and not force:
        raise name_taken(name, f"is already installed: {FORCE_HINT}")


def deletable(name: str, ledger: Ledger, registry) -> InstallRecord:
    """The install record of ``name``; 403 for the operator's models, 404 for unknown names."""
    record = ledger.get(name)
    if record is not None:
        return record
    config = registry.get(name) if registry is not None else None
    if config is not None:
        raise operator_model(name, config.source)
    raise NotFound(f"model {name!r} is not installed", code="model_not_found")


def used_by_others(name: str, root: Path, registry) -> list[str]:
    """The models-dir paths other models' ``parameters.model`` name (a file, or a directory of files)."""
    used = []
    real_root = os.path.realpath(root)
    for config in registry.all() if registry is not None else ():
        model = config.parameters.model
        if config.name == name or not model or "://" in model:
            continue
        real = os.path.realpath(os.path.join(real_root, os.path.expanduser(model)))
        if real.startswith(real_root + os.sep):
            used.append(norm(os.path.relpath(real, real_root)))
    return used


def remove(record: InstallRecord, root: Path, ledger: Ledger, registry=None) -> list[str]:
    """Delete a model's config and the files its install created that no other model uses (another
    install's record lists it, or another config's ``parameters.model`` names it or its directory)."""
    others: set[str] = set()
    for rel, names in ledger.owners().items():
        if names - {record.name}:
            others.add(rel)
    used = used_by_others(record.name, root, registry)
    removed = []
    for rel in [record.config] + ([] if record.legacy else record.files):
        if rel in others or any(rel == u or rel.startswith(u + "/") for u in used):
            continue
        try:
            target = download.safe_target(root, rel)
        except download.DownloadError:
            continue
        if target.is_file() or target.is_symlink():
            target.unlink()
            removed.append(rel)
    ledger.remove(record.name)
    return removed
