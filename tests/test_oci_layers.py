"""apply_layer safety: what a layer may and may not write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from localai.gallery import oci
from localai.gallery.oci import OCIError

from tests.oci_helpers import f, layer


def apply(tmp_path: Path, entries, compress=True) -> Path:
    dest = tmp_path / "root" / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "layer.bin"
    path.write_bytes(layer(entries, compress))
    oci.apply_layer(path, dest)
    return dest


@pytest.mark.parametrize("entries, message", [
    ([f("../evil")], "escapes the destination"),
    ([f("a/../../evil")], "escapes the destination"),
    ([f("/etc/evil")], "absolute path"),
    ([("lnk", "sym", "/etc/passwd", 0o777)], "points outside"),
    ([("lnk", "sym", "../../outside", 0o777)], "points outside"),
    ([("d/lnk", "sym", "../..", 0o777)], "points outside"),
    ([("lib", "sym", "/etc", 0o777), f("lib/passwd")], "points outside"),
    ([("hl", "hard", "../outside.txt", 0o644)], "hard link"),
    ([("hl", "hard", "/etc/passwd", 0o644)], "hard link"),
    ([("hl", "hard", "missing", 0o644)], "not an existing regular file"),
    ([("null", "chr", None, 0o666)], "device file or FIFO"),
    ([("pipe", "fifo", None, 0o666)], "device file or FIFO"),
    # chains: a link that is fine when made but escapes once a later link appears
    ([("d1", "dir", None, 0o755), ("l2", "sym", "d1/x/..", 0o777), ("d1/x", "sym", "..", 0o777)],
     "resolves outside"),
])
def test_apply_layer_refuses(tmp_path, entries, message):
    (tmp_path / "outside.txt").write_text("secret")
    with pytest.raises(OCIError, match=message):
        apply(tmp_path, entries)
    assert not (tmp_path / "root" / "evil").exists()
    assert (tmp_path / "outside.txt").read_text() == "secret"


def test_apply_layer_never_writes_through_existing_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = apply(tmp_path, [f("real/x"), ("lib", "sym", "real", 0o777)])  # an inside link is fine
    with pytest.raises(OCIError, match="refusing to write through symlink lib"):
        apply(tmp_path, [f("lib/passwd")])
    (dest / "lib").unlink()
    (dest / "lib").symlink_to(outside)  # planted by some other means
    with pytest.raises(OCIError, match="write through symlink lib"):
        apply(tmp_path, [f("lib/passwd")])
    assert list(outside.iterdir()) == []
    # a file member replaces a symlink instead of writing into its target
    (dest / "file").symlink_to(outside / "target")
    with pytest.raises(OCIError, match="resolves outside"):
        apply(tmp_path, [f("ok")])
    (dest / "lib").unlink()
    apply(tmp_path, [f("file", "mine")])
    assert not (dest / "file").is_symlink() and not (outside / "target").exists()


def test_apply_layer_keeps_modes_and_links(tmp_path):
    dest = apply(tmp_path, [
        f("run.sh", "#!/bin/sh\n", 0o755), f("suid", "x", 0o6755), f("gw", "x", 0o666),
        ("ro", "dir", None, 0o555), f("ro/inner"), ("ln", "sym", "run.sh", 0o777),
        ("hl", "hard", "run.sh", 0o755), ("abs", "sym", str(tmp_path / "root" / "dest" / "run.sh"), 0o777),
    ], compress=False)  # plain tar, detected by magic

    def mode(p):
        return stat.S_IMODE(os.lstat(dest / p).st_mode)

    assert mode("run.sh") == 0o755 and mode("suid") == 0o755 and mode("gw") == 0o644
    assert mode("ro") == 0o755 and (dest / "ro/inner").is_file()
    assert os.readlink(dest / "ln") == "run.sh"
    assert os.stat(dest / "hl").st_ino == os.stat(dest / "run.sh").st_ino


def test_apply_layer_bad_archives(tmp_path, monkeypatch):
    dest = tmp_path / "d"
    dest.mkdir()
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(OCIError, match="junk is not a valid tar archive"):
        oci.apply_layer(tmp_path / "junk", dest)
    (tmp_path / "trunc").write_bytes(layer([f("a", os.urandom(20000))])[:2000])
    with pytest.raises(OCIError, match="not a valid tar archive"):
        oci.apply_layer(tmp_path / "trunc", dest)
    (tmp_path / "zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    with pytest.raises(OCIError, match="zstd-compressed; install the 'zstandard' package"):
        oci.apply_layer(tmp_path / "zst", dest)
    (tmp_path / "empty").write_bytes(b"")
    oci.apply_layer(tmp_path / "empty", dest)
