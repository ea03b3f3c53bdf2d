"""OCI layout files and docker-save tarballs: round trips and corrupt blobs."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from localai.gallery import oci
from localai.gallery.oci import OCIError

from tests.oci_helpers import HOST_ARCH, backend_dir, f, layer, sha, tree


def test_ocifile_roundtrip(oci_registry, tmp_path):
    src = backend_dir(tmp_path / "src")
    out = tmp_path / "img.tar"
    digest = oci.write_ocifile(src, out, "v1")
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        index = json.load(tf.extractfile("index.json"))
    assert {"oci-layout", "index.json", f"blobs/sha256/{digest[7:]}"} <= names
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    seen = []
    dest = tmp_path / "dest"
    dest.mkdir()
    assert oci.import_ocifile(out, dest, progress=lambda d, t: seen.append(d)) == digest
    assert tree(dest) == tree(src) and seen == sorted(seen) and seen
    # the same digest as a push of the same dir
    assert oci.push_image(src, f"{oci_registry.host}/backends/ocifile:v1") == digest
    # an OCI layout directory works too
    layout = tmp_path / "layout"
    with tarfile.open(out) as tf:
        tf.extractall(layout, filter="data")
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    assert oci.import_ocifile(layout, dest2) == digest
    assert tree(dest2) == tree(src)


def test_ocifile_corrupt_blob(tmp_path):
    src = backend_dir(tmp_path / "src")
    oci.write_ocifile(src, tmp_path / "img.tar")
    layout = tmp_path / "layout"
    with tarfile.open(tmp_path / "img.tar") as tf:
        tf.extractall(layout, filter="data")
    manifest = json.loads((layout / "blobs/sha256" / json.loads((layout / "index.json").read_text())
                           ["manifests"][0]["digest"][7:]).read_text())
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    blob.write_bytes(blob.read_bytes()[:-1] + b"X")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OCIError, match="failed verification"):
        oci.import_ocifile(layout, dest)
    assert list(dest.iterdir()) == []
    (tmp_path / "plain.tar").write_bytes(layer([f("x")], compress=False))
    with pytest.raises(OCIError, match="neither an OCI image layout"):
        oci.import_ocifile(tmp_path / "plain.tar", dest)


def test_docker_save_tarball(tmp_path):
    l1 = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("gone")], compress=False)
    l2 = layer([f(".wh.gone", ""), f("saved.txt", "saved")], compress=False)
    config = json.dumps({"architecture": HOST_ARCH, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(l1), sha(l2)]}}).encode()
    files = {"manifest.json": json.dumps([{"Config": "cfg.json", "RepoTags": ["x:latest"],
                                           "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode(),
             "cfg.json": config, "aaa/layer.tar": l1, "bbb/layer.tar": l2, "repositories": b"{}"}
    out = tmp_path / "save.tar"
    with tarfile.open(out, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    assert oci.import_ocifile(out, dest) == sha(config)
    assert sorted(tree(dest)) == ["run.sh", "saved.txt"]
    assert os.access(dest / "run.sh", os.X_OK)
