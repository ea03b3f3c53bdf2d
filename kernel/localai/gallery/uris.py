"""Download URIs and targets: ``huggingface://``, ``hf://`` and ``github:`` URIs as https URLs
(``HF_ENDPOINT`` honoured), file names that must stay inside a directory, and :class:`Remotes`,
the operator's settings for reaching remote stores."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import HF_DEFAULT, Settings


class DownloadError(Exception):
    """A failed download: the message names the URI and why. ``cancelled`` marks a cancel."""

    def __init__(self, message: str, *, uri: str = "", cancelled: bool = False):
        super().__init__(message)
        self.uri = uri
        self.cancelled = cancelled


def hf_endpoint(endpoint: str = HF_DEFAULT) -> str:
    """``endpoint`` (``HF_ENDPOINT``) as a URL without a trailing slash; huggingface.co when empty."""
    endpoint = endpoint or HF_DEFAULT
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/")


@dataclass(frozen=True)
class Remotes:
    """How downloads reach remote stores, from :class:`localai.settings.Settings`: the Hugging Face
    endpoint and the token sent to it only, and the OCI registries spoken to over plain http."""

    hf_endpoint: str = HF_DEFAULT
    hf_token: str = field(default="", repr=False)
    insecure_registries: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> Remotes:
        return cls(hf_endpoint(settings.hf_endpoint), settings.hf_token, tuple(settings.insecure_registries))


def _repo_path(uri: str, rest: str) -> tuple[str, str, str | None, str]:
    """``owner/repo[@rev]/path`` or ``owner/repo/path[@rev]`` → (owner, repo, rev, path)."""
    parts = rest.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise DownloadError(f"{uri}: expected OWNER/REPO[@REVISION]/PATH", uri=uri)
    owner, repo, path = parts
    rev = None
    if "@" in repo:
        repo, rev = repo.split("@", 1)
    elif "@" in path.rsplit("/", 1)[-1]:
        path, rev = path.rsplit("@", 1)
    if not repo or not path or rev == "":
        raise DownloadError(f"{uri}: expected OWNER/REPO[@REVISION]/PATH", uri=uri)
    return owner, repo, rev, path


def resolve_uri(uri: str, endpoint: str = HF_DEFAULT) -> str:
    """Turn ``huggingface://``, ``hf://`` and ``github:`` URIs into https URLs; others unchanged.

    ``hf://owner/repo/path`` → ``{endpoint}/owner/repo/resolve/main/path``; a revision goes
    after the repo (``owner/repo@rev/path``) or after the file (``…/path@rev``).
    ``github:owner/repo/path[@branch]`` → ``https://raw.githubusercontent.com/owner/repo/branch/path``.
    ``https://huggingface.co/…`` goes to ``endpoint`` (``HF_ENDPOINT``) when it is another.
    """
    endpoint = hf_endpoint(endpoint)
    for prefix in ("huggingface://", "hf://"):
        if uri.startswith(prefix):
            owner, repo, rev, path = _repo_path(uri, uri[len(prefix):])
            return f"{endpoint}/{owner}/{repo}/resolve/{rev or 'main'}/{path}"
    for prefix in ("github://", "github:"):
        if uri.startswith(prefix):
            owner, repo, rev, path = _repo_path(uri, uri[len(prefix):])
            return f"https://raw.githubusercontent.com/{owner}/{repo}/{rev or 'main'}/{path}"
    if endpoint != HF_DEFAULT and uri.startswith(HF_DEFAULT + "/"):
        return endpoint + uri[len(HF_DEFAULT):]
    return uri


def safe_target(root: Path, filename: str) -> Path:
    """``root / filename``, refusing absolute names, ``..`` escapes and symlinks leading out of root."""
    name = str(filename)
    if not name or "\x00" in name:
        raise DownloadError(f"invalid file name {filename!r}")
    if os.path.isabs(name):
        raise DownloadError(f"file name {filename!r} is an absolute path")
    rel = os.path.normpath(name)
    if rel in (".", "..") or rel.startswith(".." + os.sep):
        raise DownloadError(f"file name {filename!r} escapes {root}")
    target = Path(root) / rel
    real_root = os.path.realpath(root)
    if not os.path.realpath(target).startswith(real_root + os.sep):
        raise DownloadError(f"file name {filename!r} resolves outside {root} through a symlink")
    return target
