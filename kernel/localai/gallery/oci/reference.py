"""Image references: parse ``[oci://]HOST[:PORT]/repo[:tag][@digest]``; which registries speak http."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")


class OCIError(Exception):
    """Any failure to resolve, pull, verify, apply, build or push an image."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``tag`` defaults to ``latest`` unless a digest is given."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> Reference:
        """Parse ``[oci://]HOST[:PORT]/repo/path[:tag][@sha256:...]`` (Docker Hub when no host)."""
        s = ref.strip().removeprefix("oci://")
        if not s or "://" in s:
            raise OCIError(f"invalid image reference {ref!r}")
        digest = None
        if "@" in s:
            s, digest = s.split("@", 1)
            if not DIGEST_RE.match(digest):
                raise OCIError(f"invalid image reference {ref!r}: bad digest {digest!r}")
        tag = None
        slash = s.rfind("/")
        if ":" in s[slash + 1:]:
            s, tag = s.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise OCIError(f"invalid image reference {ref!r}: bad tag {tag!r}")
        first, _, rest = s.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
            if not _HOST_RE.match(registry):
                raise OCIError(f"invalid image reference {ref!r}: bad registry host {registry!r}")
        else:
            registry, repository = "docker.io", s
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = "docker.io"
        if registry == "docker.io" and "/" not in repository:
            repository = f"library/{repository}"
        if not _REPO_RE.match(repository):
            raise OCIError(f"invalid image reference {ref!r}: bad repository {repository!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host serving the v2 API (Docker Hub's differs from its name)."""
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry


def is_oci_reference(uri: str) -> bool:
    """True for ``oci://…`` and for bare refs whose first part is a registry host."""
    if uri.startswith("oci://"):
        return True
    if "://" in uri or uri.startswith(("/", ".", "~")) or "/" not in uri:
        return False
    first = uri.split("/", 1)[0]
    if not ("." in first or ":" in first or first == "localhost"):
        return False
    try:
        Reference.parse(uri)
    except OCIError:
        return False
    return True


def _split_host(registry: str) -> tuple[str, str | None]:
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if registry.count(":") == 1:
        host, port = registry.split(":")
        return host, port
    return registry, None


def insecure_registry(registry: str, listed: Iterable[str] = ()) -> bool:
    """Plain http only for loopback hosts or those ``listed`` (``HOST`` or ``HOST:PORT``: the
    operator's ``LOCALAI_INSECURE_REGISTRIES``, from :class:`localai.settings.Settings`)."""
    host, port = _split_host(registry.strip().lower())
    if host == "localhost":
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    for entry in listed:
        entry = entry.strip().lower()
        if not entry:
            continue
        e_host, e_port = _split_host(entry)
        if e_host == host and (e_port is None or e_port == port):
            return True
    return False
