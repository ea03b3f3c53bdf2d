"""Download URIs and targets: ``huggingface://``, ``hf://`` and ``github:`` URIs as https URLs
(``HF_ENDPOINT`` honoured), and file names that must stay inside a directory."""

from __future__ import annotations

import os
from pathlib import Path

HF_DEFAULT = "https://huggingface.co"


class DownloadError(Exception):
    """A failed download: the message names the URI and why. ``cancelled`` marks a cancel."""

    def __init__(self, message: str, *, uri: str = "", cancelled: bool = False):
        super().__init__(message)
        self.uri = uri
        self.cancelled = cancelled


def hf_endpoint() -> str:
    """``HF_ENDPOINT`` (or ``HF_MIRROR``) without a trailing slash; huggingface.co by default."""
    endpoint = os.environ.get("HF_ENDPOINT") or os.environ.get("HF_MIRROR") or HF_DEFAULT
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/")


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


def resolve_uri(uri: str) -> str:
    """Turn ``huggingface://``, ``hf://`` and ``github:`` URIs into https URLs; others unchanged.

    ``hf://owner/repo/path`` → ``{HF_ENDPOINT}/owner/repo/resolve/main/path``; a revision goes
    after the repo (``owner/repo@rev/path``) or after the file (``…/path@rev``).
    ``github:owner/repo/path[@branch]`` → ``https://raw.githubusercontent.com/owner/repo/branch/path``.
    ``https://huggingface.co/…`` goes to ``HF_ENDPOINT`` when one is set.
    """
    for prefix in ("huggingface://", "hf://"):
        if uri.startswith(prefix):
            owner, repo, rev, path = _repo_path(uri, uri[len(prefix):])
            return f"{hf_endpoint()}/{owner}/{repo}/resolve/{rev or 'main'}/{path}"
    for prefix in ("github://", "github:"):
        if uri.startswith(prefix):
            owner, repo, rev, path = _repo_path(uri, uri[len(prefix):])
            return f"https://raw.githubusercontent.com/{owner}/{repo}/{rev or 'main'}/{path}"
    endpoint = hf_endpoint()
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
