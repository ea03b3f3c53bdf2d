"""OCI build, push and pull against a real local registry: manifests, indexes, layers, limits, retries."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time

import pytest

from localai.gallery import oci
from localai.gallery.oci import OCIError

from tests.oci_helpers import HOST_ARCH, Pusher, backend_dir, f, layer, sha, tree


@pytest.fixture(scope="module")
def reg(oci_registry):
    return oci_registry


@pytest.fixture
def pusher(reg):
    return Pusher(reg.host)


# --- build / push / pull ---


def test_build_image_is_reproducible(tmp_path):
    src = backend_dir(tmp_path / "b")
    m1, blobs1 = oci.build_image(src)
    os.utime(src / "backend.py", (1, 1))
    m2, blobs2 = oci.build_image(src)
    assert m1 == m2 and blobs1 == blobs2
    assert m1["mediaType"] == oci.OCI_MANIFEST and m1["config"]["mediaType"] == oci.OCI_CONFIG
    config = json.loads(blobs1[m1["config"]["digest"]])
    assert config["config"]["Entrypoint"] == ["/run.sh"] and config["os"] == "linux"
    assert config["architecture"] == HOST_ARCH
    tar = gzip.decompress(blobs1[m1["layers"][0]["digest"]])
    assert config["rootfs"]["diff_ids"] == [sha(tar)]
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = {m.name: m for m in tf}
    assert members["run.sh"].mode == 0o755 and members["run.sh"].mtime == 0
    assert sorted(members) == ["backend.py", "lib", "lib/data.bin", "lib/link.bin", "run.sh"]
    (src / "run.sh").unlink()
    with pytest.raises(OCIError, match="no run.sh"):
        oci.build_image(src)


def test_push_pull_roundtrip(reg, tmp_path):
    src = backend_dir(tmp_path / "src")
    ref = f"{reg.host}/backends/roundtrip:v1"
    digest = oci.push_image(src, ref)
    assert digest.startswith("sha256:")
    assert oci.remote_digest(ref) == digest
    assert oci.remote_digest(f"oci://{reg.host}/backends/roundtrip@{digest}") == digest
    dest = tmp_path / "dest"
    dest.mkdir()
    seen = []
    assert oci.pull_image(f"oci://{ref}", dest, progress=lambda d, t: seen.append((d, t))) == digest
    expected = tree(src)
    assert tree(dest) == expected
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert seen and seen == sorted(seen) and seen[-1][0] == seen[-1][1] > 0
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".dest.oci-*"))
    # pull by digest gives the same tree and digest
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    assert oci.pull_image(f"{reg.host}/backends/roundtrip@{digest}", dest2) == digest
    assert tree(dest2) == expected


def test_pull_requires_empty_dest(reg, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(OCIError, match="not empty"):
        oci.pull_image(f"{reg.host}/backends/roundtrip:v1", tmp_path / "d")
    with pytest.raises(OCIError, match="not a directory"):
        oci.pull_image(f"{reg.host}/backends/roundtrip:v1", tmp_path / "missing")


def test_missing_tag(reg, tmp_path):
    with pytest.raises(OCIError, match=r"manifest nope: HTTP 404 not found"):
        oci.pull_image(f"{reg.host}/backends/none:nope", tmp_path)
    with pytest.raises(OCIError, match="404"):
        oci.remote_digest(f"{reg.host}/backends/none:nope")


def test_docker_v2_via_skopeo(reg, tmp_path):
    skopeo = shutil.which("skopeo")
    if not skopeo:
        pytest.fail("skopeo is not installed: apt-get install skopeo")
    src = backend_dir(tmp_path / "src", marker="v2s2")
    archive = tmp_path / "img.tar"
    oci.write_ocifile(src, archive)
    ref = f"{reg.host}/backends/skopeo:v2"
    subprocess.run([skopeo, "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
                    f"oci-archive:{archive}", f"docker://{ref}"], check=True, timeout=60)
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True, timeout=60).stdout
    assert json.loads(raw)["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    dest = tmp_path / "dest"
    dest.mkdir()
    assert oci.pull_image(ref, dest) == sha(raw) == oci.remote_digest(ref)
    assert tree(dest) == tree(src)
    # skopeo's own exports import too: an OCI archive and a docker-save (docker-archive) tarball
    for kind in ("oci-archive", "docker-archive"):
        out = tmp_path / f"{kind}.tar"
        subprocess.run([skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"{kind}:{out}"],
                       check=True, timeout=60)
        dest = tmp_path / kind
        dest.mkdir()
        assert oci.import_ocifile(out, dest).startswith("sha256:")
        assert tree(dest) == tree(src), kind


@pytest.mark.parametrize("docker, media_type", [(True, True), (False, False)])
def test_hand_built_manifests(pusher, tmp_path, docker, media_type):
    """A Docker v2 manifest, and an OCI manifest without ``mediaType`` (as skopeo writes)."""
    data = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("docker.txt", "docker")])
    digest = pusher.image("backends/handbuilt", "t", [data], tmp_path, docker=docker, media_type=media_type)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert oci.pull_image(f"{pusher.host}/backends/handbuilt:t", dest) == digest
    assert (dest / "docker.txt").read_text() == "docker"


def test_index_picks_host_platform(pusher, tmp_path):
    repo = "backends/multi"
    entries = []
    for arch in ("amd64", "arm64"):
        data = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("arch.txt", arch)])
        d = pusher.image(repo, f"only-{arch}", [data], tmp_path, arch=arch)
        size = len(pusher.reg.do_request(f"http://{pusher.host}/v2/{repo}/manifests/{d}", "GET",
                                         headers={"Accept": oci.OCI_MANIFEST}).content)
        entries.append({"mediaType": oci.OCI_MANIFEST, "digest": d, "size": size,
                        "platform": {"os": "linux", "architecture": arch}})
    entries.insert(0, {**entries[0], "platform": {"os": "unknown", "architecture": "unknown"}})
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": entries}
    top = pusher.manifest(repo, "multi", index, oci.OCI_INDEX)
    dest = tmp_path / "dest"
    dest.mkdir()
    ref = f"{pusher.host}/{repo}:multi"
    assert oci.pull_image(ref, dest) == top == oci.remote_digest(ref)
    assert (dest / "arch.txt").read_text() == HOST_ARCH
    # an index without a matching platform is refused with the list of what it has
    other = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
             "manifests": [{**entries[1], "platform": {"os": "linux", "architecture": "s390x"}}]}
    pusher.manifest(repo, "s390x", other, oci.OCI_INDEX)
    (tmp_path / "dest2").mkdir()
    with pytest.raises(OCIError, match=f"no image for linux/{HOST_ARCH} .*linux/s390x"):
        oci.pull_image(f"{pusher.host}/{repo}:s390x", tmp_path / "dest2")
    # a lone entry without a platform is taken
    lone = {"schemaVersion": 2, "manifests": [{k: v for k, v in entries[2].items() if k != "platform"}]}
    pusher.manifest(repo, "lone", lone, oci.OCI_INDEX)
    dest3 = tmp_path / "dest3"
    dest3.mkdir()
    oci.pull_image(f"{pusher.host}/{repo}:lone", dest3)
    assert (dest3 / "arch.txt").read_text() in ("amd64", "arm64")


def test_layers_whiteouts_and_opaque_dirs(pusher, tmp_path):
    l1 = layer([f("run.sh", "#!/bin/sh\n", 0o755), ("a", "dir", None, 0o755), f("a/keep"), f("a/gone"),
                f("b/old1"), f("b/sub/old2"), f("c/file"), f("top", "v1")])
    l2 = layer([f("a/.wh.gone", ""), ("b", "dir", None, 0o755), f("b/new", "new"), f("b/.wh..wh..opq", ""),
                f(".wh.c", ""), f("top", "v2")])
    digest = pusher.image("backends/layers", "t", [l1, l2], tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert oci.pull_image(f"{pusher.host}/backends/layers:t", dest) == digest
    assert sorted(tree(dest)) == ["a", "a/keep", "b", "b/new", "run.sh", "top"]
    assert (dest / "top").read_text() == "v2" and (dest / "b/new").read_text() == "new"


def test_corrupt_blob_is_refused_and_nothing_applied(reg, pusher, tmp_path):
    good = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("good.txt", "first")])
    bad = layer([f("evil.txt", "corrupt-me " * 50)])
    pusher.image("backends/corrupt", "t", [good, bad], tmp_path)
    digest = sha(bad)
    data = reg.workdir / "storage/docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    data.write_bytes(b"\0" * len(bad))  # same size, other content: the registry serves it as is
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OCIError, match=f"blob {digest} failed verification"):
        oci.pull_image(f"{reg.host}/backends/corrupt:t", dest)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_max_bytes_refused_before_download(pusher, tmp_path):
    data = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("big", os.urandom(5000))])
    pusher.image("backends/big", "t", [data], tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    seen = []
    with pytest.raises(OCIError, match=f"image layers total {len(data)} bytes, more than the limit of 1000"):
        oci.pull_image(f"{pusher.host}/backends/big:t", dest, max_bytes=1000, progress=lambda *a: seen.append(a))
    assert seen == [] and list(dest.iterdir()) == []
    dest = tmp_path / "ok"
    dest.mkdir()
    oci.pull_image(f"{pusher.host}/backends/big:t", dest, max_bytes=len(data))


@pytest.mark.parametrize("delta, message", [(-10, "is larger than its declared size"),
                                            (10, r"is \d+ bytes, the manifest declares")])
def test_declared_size_is_enforced(pusher, tmp_path, delta, message):
    data = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("payload", os.urandom(2000))])
    desc = pusher.blob("backends/sized", data, tmp_path)
    doc = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
           "config": pusher.blob("backends/sized", b"{}", tmp_path, oci.OCI_CONFIG),
           "layers": [{**desc, "size": desc["size"] + delta}]}
    pusher.manifest("backends/sized", "t", doc, oci.OCI_MANIFEST)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OCIError, match=f"blob {desc['digest']} {message}"):
        oci.pull_image(f"{pusher.host}/backends/sized:t", dest, max_bytes=desc["size"] + 10)
    assert list(dest.iterdir()) == []


def test_cancel(reg, tmp_path):
    src = backend_dir(tmp_path / "src")
    ref = f"{reg.host}/backends/cancel:v1"
    oci.push_image(src, ref)
    ev = threading.Event()
    ev.set()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OCIError, match="^cancelled$"):
        oci.pull_image(ref, dest, cancel=ev)
    ev2 = threading.Event()
    with pytest.raises(OCIError, match="^cancelled$"):
        oci.pull_image(ref, dest, cancel=ev2, progress=lambda d, t: ev2.set())
    assert list(dest.iterdir()) == []


def test_unreachable_registry_fails_fast(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(OCIError, match=f"127.0.0.1:{port}.*failed after 3 attempts"):
        oci.pull_image(f"127.0.0.1:{port}/a/b:c", tmp_path)
    with pytest.raises(OCIError, match="failed after 3 attempts"):
        oci.remote_digest(f"127.0.0.1:{port}/a/b:c")
    assert time.monotonic() - start < 5


class FakeRegistry(http.server.ThreadingHTTPServer):
    """Serves one image; ``blob_failures`` first blob GETs break mid-stream; ``status`` forces errors."""

    def __init__(self, blob: bytes, *, blob_failures: int = 0, status: int = 200):
        self.blob, self.blob_failures, self.status, self.hits = blob, blob_failures, status, []
        self.manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                                    "config": {"mediaType": oci.OCI_CONFIG, "digest": sha(b"{}"), "size": 2},
                                    "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": sha(blob),
                                                "size": len(blob)}]}).encode()
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def host(self):
        return f"127.0.0.1:{self.server_address[1]}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            srv = self.server
            srv.hits.append(self.path)
            if srv.status != 200:
                self.send_response(srv.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = srv.manifest if "/manifests/" in self.path else srv.blob
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if "/manifests/" in self.path:
                self.send_header("Content-Type", oci.OCI_MANIFEST)
            self.end_headers()
            if "/blobs/" in self.path and srv.blob_failures > 0:
                srv.blob_failures -= 1
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)


def test_server_errors_are_retried_then_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(oci.registry, "BACKOFF", 0.01)
    srv = FakeRegistry(b"", status=503)
    try:
        with pytest.raises(OCIError, match="failed after 3 attempts: HTTP 503"):
            oci.pull_image(f"{srv.host}/a/b:c", tmp_path)
    finally:
        srv.shutdown()
    assert len(srv.hits) == 3


def test_broken_blob_stream_is_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(oci.registry, "BACKOFF", 0.01)
    blob = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("data", os.urandom(300_000))])
    srv = FakeRegistry(blob, blob_failures=2)
    dest = tmp_path / "dest"
    dest.mkdir()
    seen = []
    try:
        assert oci.pull_image(f"{srv.host}/a/b:c", dest, progress=lambda d, t: seen.append(d)) == sha(srv.manifest)
        assert (dest / "data").stat().st_size == 300_000
        assert seen == sorted(seen) and seen[-1] == len(blob)
        assert sum("/blobs/" in h for h in srv.hits) == 3
        srv.blob_failures = 5
        dest2 = tmp_path / "dest2"
        dest2.mkdir()
        with pytest.raises(OCIError, match=f"download of blob {sha(blob)} failed after 3 attempts"):
            oci.pull_image(f"{srv.host}/a/b:c", dest2)
        assert list(dest2.iterdir()) == []
    finally:
        srv.shutdown()


def test_unsafe_image_through_pull(pusher, tmp_path):
    data = layer([f("run.sh", "#!/bin/sh\n", 0o755), f("../escape.txt")])
    pusher.image("backends/unsafe", "t", [data], tmp_path)
    dest = tmp_path / "stage" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(OCIError, match=r"backends/unsafe:t: layer sha256:.*'../escape.txt' escapes"):
        oci.pull_image(f"{pusher.host}/backends/unsafe:t", dest)
    assert not (tmp_path / "stage" / "escape.txt").exists()
