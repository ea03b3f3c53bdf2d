"""Packaging: a backend directory as one reproducible OCI image, pushed or written as a layout tarball."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .layers import escaping_symlinks
from .reference import OCIError, Reference
from .registry import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Client, host_platform, http_error


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _walk(src: Path) -> Iterator[tuple[str, str]]:
    for d, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(d, name)
            yield full, os.path.relpath(full, src).replace(os.sep, "/")


def _manifest_bytes(manifest: dict) -> bytes:
    """Serialized as ``requests``' ``json=`` does, so pushed and written digests agree."""
    return json.dumps(manifest).encode()


def build_image(src_dir: Path) -> tuple[dict, dict[str, bytes]]:
    """One reproducible tar+gzip layer of ``src_dir`` plus an OCI config and manifest."""
    src = Path(src_dir)
    if not (src / "run.sh").is_file():
        raise OCIError(f"{src}: no run.sh at the top of the backend directory")
    refused = escaping_symlinks(src)
    if refused:
        shown = ", ".join(f"{rel} -> {target}" for rel, target in refused[:3])
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise OCIError(
            f"{src}: symlinks pointing outside the backend directory, which the installer refuses: {shown}{more}. "
            "Bundle dependencies as plain files, not a venv (pip install --target DIR -r requirements.txt, as "
            "the backend template's install.sh does), and replace such links with copies")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for full, arc in _walk(src):
            ti = tf.gettarinfo(full, arc)
            if not (ti.isreg() or ti.isdir() or ti.issym() or ti.islnk()):
                raise OCIError(f"{src}: {arc} is not a file, directory or symlink")
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            ti.mode = 0o755 if arc == "run.sh" else ti.mode & 0o777
            if ti.isreg():
                with open(full, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
    tar = raw.getvalue()
    layer = gzip.compress(tar, compresslevel=6, mtime=0)
    config = json.dumps({
        "architecture": host_platform()[1], "os": "linux",
        "config": {"Entrypoint": ["/run.sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(tar)]},
    }, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha(layer), "size": len(layer)}],
    }
    return manifest, {_sha(config): config, _sha(layer): layer}


def push_image(src_dir: Path, ref: str, insecure_registries: Iterable[str] = ()) -> str:
    """Build ``src_dir`` and push it to ``ref``; returns the manifest digest."""
    manifest, blobs = build_image(src_dir)
    client = Client(Reference.parse(ref), insecure_registries=insecure_registries)
    with tempfile.TemporaryDirectory(prefix="localai-push-") as tmp:
        for desc in [manifest["config"], *manifest["layers"]]:
            path = os.path.join(tmp, desc["digest"].split(":")[1])
            with open(path, "wb") as f:
                f.write(blobs[desc["digest"]])
            resp = client.upload_blob(path, client.container, desc)
            if resp.status_code not in (200, 201, 202):
                raise http_error(client, f"upload of blob {desc['digest']}", resp)
    resp = client.upload_manifest(manifest, client.container)
    if resp.status_code not in (200, 201):
        raise http_error(client, "upload of manifest", resp)
    return resp.headers.get("Docker-Content-Digest") or _sha(_manifest_bytes(manifest))


def write_ocifile(src_dir: Path, out: Path, ref_name: str = "latest") -> str:
    """Write ``src_dir`` as an OCI image layout tarball at ``out``; returns the manifest digest."""
    manifest, blobs = build_image(src_dir)
    mbytes = _manifest_bytes(manifest)
    digest = _sha(mbytes)
    blobs = {**blobs, digest: mbytes}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": digest, "size": len(mbytes),
        "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    files.update({f"blobs/sha256/{d.split(':')[1]}": b for d, b in sorted(blobs.items())})
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest
