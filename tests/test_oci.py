"""OCI pulls, layer safety, build/push and OCI layout files against a real local registry."""

from __future__ import annotations

import gzip
import hashlib
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
from pathlib import Path

import oras.provider
import pytest

from localai.gallery import oci
from localai.gallery.oci import OCIError, Reference

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


@pytest.fixture(scope="module")
def reg(oci_registry):
    return oci_registry


@pytest.fixture
def pusher(reg):
    return Pusher(reg.host)


# --- references ---


@pytest.mark.parametrize("ref, expected", [
    ("oci://127.0.0.1:5000/backends/cpu-llama:v1", ("127.0.0.1:5000", "backends/cpu-llama", "v1", None)),
    ("quay.io/go-skynet/local-ai-backends:latest-cpu",
     ("quay.io", "go-skynet/local-ai-backends", "latest-cpu", None)),
    ("localhost/x/y", ("localhost", "x/y", "latest", None)),
    ("localhost:5000/x", ("localhost:5000", "x", "latest", None)),
    ("ubuntu", ("docker.io", "library/ubuntu", "latest", None)),
    ("ubuntu:22.04", ("docker.io", "library/ubuntu", "22.04", None)),
    ("myorg/img:1", ("docker.io", "myorg/img", "1", None)),
    ("docker.io/ubuntu", ("docker.io", "library/ubuntu", "latest", None)),
    ("ghcr.io/a/b@sha256:" + "a" * 64, ("ghcr.io", "a/b", None, "sha256:" + "a" * 64)),
    ("ghcr.io/a/b:t@sha256:" + "b" * 64, ("ghcr.io", "a/b", "t", "sha256:" + "b" * 64)),
])
def test_reference_parse(ref, expected):
    r = Reference.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == expected
    assert Reference.parse(str(r)) == r


@pytest.mark.parametrize("bad", ["", "oci://", "quay.io/A/Upper:x", "quay.io/a@sha256:short",
                                 "quay.io/a:bad tag", "http://quay.io/a"])
def test_reference_parse_rejects(bad):
    with pytest.raises(OCIError, match="invalid image reference"):
        Reference.parse(bad)


def test_reference_str():
    assert str(Reference.parse("oci://quay.io/a/b:c")) == "quay.io/a/b:c"
    assert str(Reference.parse("ubuntu")) == "docker.io/library/ubuntu:latest"


@pytest.mark.parametrize("uri, expected", [
    ("oci://anything/x:y", True), ("quay.io/go-skynet/x:latest", True), ("ghcr.io/a/b", True),
    ("docker.io/library/ubuntu", True), ("127.0.0.1:5000/a/b:c", True), ("localhost:5000/a", True),
    ("localhost/a", True), ("/abs/path", False), ("./rel/dir", False), ("rel/dir", False),
    ("file:///x/y", False), ("https://example.com/x.tar", False), ("http://h/x", False),
    ("ocifile:///tmp/x.tar", False), ("llama-cpp", False), ("quay.io", False), ("~/x", False),
])
def test_is_oci_reference(uri, expected):
    assert oci.is_oci_reference(uri) is expected


def test_insecure_registry(monkeypatch):
    monkeypatch.delenv("LOCALAI_INSECURE_REGISTRIES", raising=False)
    for host in ("127.0.0.1:5000", "127.8.9.10", "localhost", "localhost:5000", "[::1]:5000", "::1"):
        assert oci.insecure_registry(host), host
    for host in ("quay.io", "10.0.0.5:5000", "registry.lan:5000", "localhost.evil.com"):
        assert not oci.insecure_registry(host), host
    monkeypatch.setenv("LOCALAI_INSECURE_REGISTRIES", " registry.lan:5000, 10.0.0.5 ")
    assert oci.insecure_registry("registry.lan:5000")
    assert not oci.insecure_registry("registry.lan:6000")
    assert not oci.insecure_registry("registry.lan")
    assert oci.insecure_registry("10.0.0.5:443") and oci.insecure_registry("10.0.0.5")


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


# --- apply_layer safety ---


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


# --- OCI layout and docker-save files ---


def test_ocifile_roundtrip(reg, tmp_path):
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
    assert oci.push_image(src, f"{reg.host}/backends/ocifile:v1") == digest
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
