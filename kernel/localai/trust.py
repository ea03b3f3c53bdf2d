"""Who may set what: configs from outside (the HTTP API, any gallery) may not name programs,
local paths or upstream servers; only the operator may (YAML in the models dir, plugin-shipped
configs, CLI flags and the environment). SECURITY.md holds the field-by-field table.

:func:`check_config` refuses a model config from outside that sets an operator-only field, naming
the field. :func:`is_local_uri` is the one notion of a local file, for these checks and for the
readers (:mod:`localai.gallery.index`, :mod:`localai.gallery.download`): a string is a remote
reference only when it has a remote scheme (``http``, ``https``, ``hf``, ``huggingface``,
``github``, ``oci``, ``pypi``) or is a bare OCI reference (``registry.example/ns/model:tag``);
everything else (``file:``, paths, unknown schemes such as ``x:/…``) is a local path, read as
:func:`local_path` says. :func:`check_local_uri` refuses a local path in an API request unless it
lies under a directory the operator allowed (``--allow-local-urls``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from .errors import BadRequest

PACKAGE_SCHEME = "pkg://"
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a top-level import name: find_spec imports no parent


def split_package_uri(value: str) -> tuple[str, str] | None:
    """``pkg://IMPORT_NAME/MEMBER`` → (import name, member); None unless it names a package member:
    a top-level import name and a relative member path without empty, ``.`` or ``..`` parts."""
    if not value.startswith(PACKAGE_SCHEME):
        return None
    package, _, member = value[len(PACKAGE_SCHEME):].partition("/")
    parts = member.split("/")
    if not _PACKAGE.match(package) or "\\" in member or any(p in ("", ".", "..") for p in parts):
        return None
    return package, member


# ``proxy:`` keys that start a program, reach a server, or read a secret and send it out
OPERATOR_ONLY_PROXY = ("command", "ready_url", "upstream_url", "api_key_env", "api_key_file")
# free text, never used as a path: left out of the path scan
TEXT_FIELDS = frozenset({"name", "description", "system_prompt", "template", "stopwords", "license", "icon",
                         "urls", "tags", "usage", "known_usecases"})
REMOTE_SCHEMES = frozenset({"http", "https", "hf", "huggingface", "github", "oci", "pypi"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# a registry host (with a dot or a port, or localhost, or [IPv6]) and a repository path, tag, digest
_OCI_HOST = r"(?:(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?|[A-Za-z0-9-]+:[0-9]+)"
_OCI_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI_TAG = r"(?::\w[\w.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?"
_BARE_OCI = re.compile(rf"^{_OCI_HOST}(?:/{_OCI_NAME})+{_OCI_TAG}$")
OPERATOR_HINT = ("only the operator may set it (a YAML file in the models directory, a plugin's config or a CLI "
                 "flag), not a config from the API or a gallery: see SECURITY.md")


class NotAllowed(BadRequest):
    def __init__(self, message: str, param: str):
        super().__init__(message, code="field_not_allowed", param=param)


def looks_like_path(value: str) -> bool:
    """An absolute or home path, a ``file:`` URL, or anything that climbs with ``..``."""
    text = value.strip()
    if not text or any(c in text for c in "\n\r"):
        return False
    parts = text.replace("\\", "/").split("/")
    if ".." in parts:
        return True
    return " " not in text and (text.startswith(("/", "~")) or text.lower().startswith("file:"))


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` with its dotted field name (``options[1]``, ``diffusers.config``)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


def check_config(config: dict[str, Any], where: str) -> None:
    """Refuse a config from outside that sets an operator-only field (400 naming the field)."""
    proxy = config.get("proxy")
    if isinstance(proxy, dict):
        for key in OPERATOR_ONLY_PROXY:
            if proxy.get(key) not in (None, "", []):
                raise NotAllowed(f"{where}: proxy.{key} is not allowed here: {OPERATOR_HINT}", f"proxy.{key}")
    backend = config.get("backend")
    if isinstance(backend, str) and any(c in backend for c in "/\\:"):
        raise NotAllowed(f"{where}: backend {backend!r} must be the name of an installed backend, not a path or "
                         f"address: {OPERATOR_HINT}", "backend")
    for field, value in _strings({k: v for k, v in config.items() if k not in TEXT_FIELDS}, ""):
        if field == "parameters.model" and value.startswith("pkg://"):
            if split_package_uri(value) is not None:
                continue
            raise NotAllowed(f"{where}: parameters.model is not a package member (pkg://IMPORT_NAME/PATH, a relative "
                             f"path without '..'); {OPERATOR_HINT}", field)
        if looks_like_path(value.split(":", 1)[1] if field.startswith("options[") and ":" in value else value):
            raise NotAllowed(f"{where}: {field} names a path outside the models directory; {OPERATOR_HINT}", field)


def uri_scheme(uri: str) -> str:
    """The scheme of ``uri``, lower-cased (RFC 3986: a letter, then letters, digits, ``+-.``, then
    ``:``); "" without one."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else ""


def is_bare_oci_reference(uri: str) -> bool:
    """``registry.example[:port]/ns/model[:tag][@digest]`` without a scheme."""
    return bool(_BARE_OCI.match(uri))


def is_local_uri(uri: str) -> bool:
    """Whether ``uri`` names a local file: anything but a remote scheme or a bare OCI reference."""
    scheme = uri_scheme(uri)
    if scheme in REMOTE_SCHEMES:
        return False
    return scheme == "file" or not is_bare_oci_reference(uri)


def local_path(uri: str) -> str:
    """The path a local ``uri`` names: a ``file:`` URL's (percent-decoded) path, else ``uri`` itself
    with ``~`` expanded. The checks and the readers open exactly this path."""
    if uri_scheme(uri) == "file":
        parts = urlsplit(uri)
        host = "" if parts.netloc.lower() in ("", "localhost") else parts.netloc
        return unquote(host + parts.path)
    return os.path.expanduser(uri)


def check_local_uri(uri: str, roots: Iterable[Path], param: str) -> None:
    """Refuse a local file URL/path outside every allowed root (symlinks resolved)."""
    if not is_local_uri(uri):
        return
    real = os.path.realpath(local_path(uri))
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return
    raise BadRequest(f"{param} {uri!r} is a local file: API requests may only name local files under a directory "
                     "the operator allowed with --allow-local-urls (LOCALAI_ALLOW_LOCAL_URLS)",
                     code="local_url_not_allowed", param=param)
