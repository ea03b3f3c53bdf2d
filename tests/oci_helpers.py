"""Helpers of the OCI tests: hand-built layers and images, backend directories, trees."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import oras.provider

from localai.gallery import oci

HOST_ARCH = oci.registry.host_platform()[1]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def backend_dir(root: Path, marker: str = "x") -> Path:
    root.mkdir(parents=True)
    (root / "run.sh").write_text("#!/bin/sh\nexec python3 backend.py \"$@\"\n")
    (root / "run.sh").chmod(0o644)  # build_image forces 0o755
    (root / "backend.py").write_text(f"print({marker!r})\n")
    (root / "lib").mkdir()
    (root / "lib" / "data.bin").write_bytes(os.urandom(3000))
    (root / "lib" / "link.bin").symlink_to("data.bin")
    return root


def tree(root: Path) -> dict[str, bytes | str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def layer(entries, compress: bool = True) -> bytes:
    """Build a layer from (name, kind, payload, mode); kind: file, dir, sym, hard, chr, fifo."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, kind, payload, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
            else:
                ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                           "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                ti.linkname = payload or ""
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


def f(name, data="x", mode=0o644):
    return (name, "file", data, mode)


class Pusher:
    """Push hand-built blobs and manifests with oras (any manifest media type)."""

    def __init__(self, host: str):
        self.host = host
        self.reg = oras.provider.Registry(hostname=host, insecure=True)

    def blob(self, repo: str, data: bytes, tmp: Path, media_type: str = oci.OCI_LAYER_GZIP) -> dict:
        desc = {"mediaType": media_type, "digest": sha(data), "size": len(data)}
        path = tmp / desc["digest"][7:]
        path.write_bytes(data)
        c = self.reg.get_container(f"{self.host}/{repo}:x")
        assert self.reg.upload_blob(str(path), c, desc).status_code in (200, 201, 202)
        return desc

    def manifest(self, repo: str, ref: str, doc: dict, content_type: str) -> str:
        body = json.dumps(doc).encode()
        url = f"http://{self.host}/v2/{repo}/manifests/{ref}"
        r = self.reg.do_request(url, "PUT", headers={"Content-Type": content_type}, data=body)
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    def image(self, repo: str, tag: str, layers: list[bytes], tmp: Path, *, arch: str = HOST_ARCH,
              docker: bool = False, media_type: bool = True) -> str:
        lt = "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else oci.OCI_LAYER_GZIP
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        ct = "application/vnd.docker.container.image.v1+json" if docker else oci.OCI_CONFIG
        doc = {"schemaVersion": 2,
               "config": self.blob(repo, config.encode(), tmp, ct),
               "layers": [self.blob(repo, data, tmp, lt) for data in layers]}
        mt = oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST
        if media_type:
            doc["mediaType"] = mt
        return self.manifest(repo, tag, doc, mt)
