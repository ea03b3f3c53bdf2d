"""Layer safety: apply one layer tarball to a directory with whiteouts, refusing anything that
would write outside it (absolute or escaping paths, symlinks out, writes through symlinks, bad
hard links, device files)."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from pathlib import Path

from .reference import OCIError
from .registry import CHUNK


def _open_layer(f) -> tarfile.TarFile:
    magic = f.read(4)
    f.seek(0)
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise OCIError("layer is zstd-compressed; install the 'zstandard' package to apply it") from None
        return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(f), mode="r|")
    return tarfile.open(fileobj=f, mode="r|*")  # plain tar, gzip, bzip2, xz (by magic bytes)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _utime(path: str, mtime) -> None:
    try:
        os.utime(path, (mtime, mtime))
    except (OverflowError, OSError, ValueError):
        pass


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Applier:
    def __init__(self, dest: Path):
        self.root = os.path.realpath(dest)
        self.safe: set[str] = {""}  # dirs verified to be real directories (not symlinks)
        self.written: set[str] = set()
        self.dirs: list[tuple[str, int, int]] = []

    def parent(self, rel: str, create: bool = True) -> str | None:
        """Absolute path of ``rel``'s parent; refuses symlinks/non-dirs on the way."""
        parts = rel.split("/")[:-1]
        cur = ""
        for part in parts:
            cur = f"{cur}/{part}" if cur else part
            if cur in self.safe:
                continue
            full = os.path.join(self.root, cur)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(full, 0o755)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise OCIError(f"{rel}: refusing to write through symlink {cur}")
                if not stat.S_ISDIR(st.st_mode):
                    raise OCIError(f"{rel}: parent {cur} is not a directory")
            self.safe.add(cur)
        return os.path.join(self.root, *parts) if parts else self.root

    def clear(self, full: str) -> None:
        if os.path.lexists(full):
            _remove(full)
            self.safe = {""}

    def whiteout(self, rel: str) -> None:
        d, base = posixpath.split(rel)
        parent = self.parent(rel, create=False)
        if parent is None:
            return
        if base == ".wh..wh..opq":
            for name in os.listdir(parent):
                if posixpath.join(d, name) not in self.written:
                    self.clear(os.path.join(parent, name))
        else:
            name = base[len(".wh."):]
            if name in ("", ".", ".."):
                raise OCIError(f"{rel}: invalid whiteout")
            self.clear(os.path.join(parent, name))

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        raw = m.name
        if raw.startswith("/") or os.path.isabs(raw):
            raise OCIError(f"member {raw!r} has an absolute path")
        rel = posixpath.normpath(raw)
        if rel == "..":
            raise OCIError(f"member {raw!r} escapes the destination")
        if rel.startswith("../"):
            raise OCIError(f"member {raw!r} escapes the destination")
        if rel == ".":
            return
        if posixpath.basename(rel).startswith(".wh."):
            return self.whiteout(rel)
        if m.ischr() or m.isblk() or m.isfifo():
            raise OCIError(f"member {raw!r} is a device file or FIFO")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise OCIError(f"member {raw!r} has unsupported type {m.type!r}")
        parent = self.parent(rel)
        full = os.path.join(parent, posixpath.basename(rel))
        if m.issym():
            target = m.linkname
            resolved = os.path.realpath(os.path.join(parent, target))
            lexical = os.path.normpath(os.path.join(parent, target))
            if not (inside(self.root, resolved) and inside(self.root, lexical)):
                raise OCIError(f"symlink {raw!r} -> {target!r} points outside the destination")
        elif m.islnk():
            src_rel = posixpath.normpath(m.linkname)
            if m.linkname.startswith("/") or src_rel == ".." or src_rel.startswith("../"):
                raise OCIError(f"hard link {raw!r} -> {m.linkname!r} points outside the destination")
            src_parent = self.parent(src_rel, create=False)
            src = os.path.join(src_parent, posixpath.basename(src_rel)) if src_parent else None
            if src is None or src_rel == rel or not os.path.lexists(src) or not stat.S_ISREG(os.lstat(src).st_mode):
                raise OCIError(f"hard link {raw!r} -> {m.linkname!r}: target is not an existing regular file")
        if m.isdir():
            if os.path.lexists(full) and (os.path.islink(full) or not os.path.isdir(full)):
                self.clear(full)
            if not os.path.lexists(full):
                os.mkdir(full, 0o700)
            self.dirs.append((full, (m.mode & 0o755) | 0o700, m.mtime))
            self.safe.add(rel)
        else:
            self.clear(full)
            if m.issym():
                os.symlink(m.linkname, full)
            elif m.islnk():
                os.link(src, full, follow_symlinks=False)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tf.extractfile(m), out, CHUNK)
                os.chmod(full, (m.mode & 0o755) | 0o600)
                _utime(full, m.mtime)
        self.written.add(rel)

    def finish(self) -> None:
        for full, mode, mtime in reversed(self.dirs):
            if os.path.isdir(full) and not os.path.islink(full):
                os.chmod(full, mode)
                _utime(full, mtime)
        stack = [self.root]  # links made safely can still chain outside: check them all
        while stack:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if e.is_symlink():
                        if not inside(self.root, os.path.realpath(e.path)):
                            raise OCIError(f"symlink {os.path.relpath(e.path, self.root)} -> "
                                           f"{os.readlink(e.path)!r} resolves outside the destination")
                    elif e.is_dir(follow_symlinks=False):
                        stack.append(e.path)


def apply_layer(layer: Path, dest: Path) -> None:
    """Apply one layer tarball (tar, gzip, zstd if available) to ``dest`` with whiteouts.

    Refuses (OCIError) absolute or escaping paths, symlinks resolving outside ``dest``,
    writes through existing symlinks, bad hard links and device files/FIFOs. Modes are kept
    minus setuid/setgid/sticky and group/other write; ownership is not changed.
    """
    dest = Path(dest)
    if not dest.is_dir():
        raise OCIError(f"destination {dest} is not a directory")
    applier = _Applier(dest)
    with open(layer, "rb") as f:
        if not f.read(1):
            return  # an empty blob is an empty layer
        f.seek(0)
        try:
            with _open_layer(f) as tf:
                for m in tf:
                    try:
                        applier.member(tf, m)
                    except (OSError, ValueError) as exc:
                        raise OCIError(f"cannot apply member {m.name!r}: {exc}") from exc
        except OCIError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
            raise OCIError(f"layer {Path(layer).name} is not a valid tar archive: {exc}") from exc
    try:
        applier.finish()
    except OSError as exc:
        raise OCIError(f"cannot finish applying layer {Path(layer).name}: {exc}") from exc


def escaping_symlinks(root: Path) -> list[tuple[str, str]]:
    """The symlinks under ``root`` that :func:`apply_layer` would refuse once ``root`` is an image:
    absolute targets, targets leading out of ``root`` (``../``), and links resolving outside it
    (through other links). Returns ``(path relative to root, link target)`` pairs, sorted."""
    real_root = os.path.realpath(root)
    found = []
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(d, name)
            if not os.path.islink(full):
                continue
            rel = os.path.relpath(full, root)
            target = os.readlink(full)
            lexical = os.path.normpath(os.path.join(real_root, os.path.dirname(rel), target))
            if (os.path.isabs(target) or not inside(real_root, lexical)
                    or not inside(real_root, os.path.realpath(full))):
                found.append((rel.replace(os.sep, "/"), target))
    return sorted(found)
