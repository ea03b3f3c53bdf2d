"""Backend galleries end to end: a real registry (Debian's docker-registry), the template
backend packaged and pushed, a gallery that lists it, and a real ``local-ai run`` driven
through the HTTP API, the CLI and the official openai SDK."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from localai.gallery import oci

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "contrib" / "backend-template"


def template_copy(tmp_path: Path, version: str) -> Path:
    """The template backend with its own VERSION, ready to package."""
    target = tmp_path / f"template-{version}"
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns("venv", "__pycache__", "test_*.py"))
    (target / "VERSION").write_text(version + "\n")
    return target


@pytest.fixture(scope="module")
def images(oci_registry, tmp_path_factory):
    """Two template images in the registry: :1 (VERSION 1.0.0) and gpu:1 (VERSION 9.9.9)."""
    tmp = tmp_path_factory.mktemp("images")
    refs = {
        "cpu": f"{oci_registry.host}/localai/template-backend:1",
        "gpu": f"{oci_registry.host}/localai/template-backend-gpu:1",
    }
    oci.push_image(template_copy(tmp, "1.0.0"), refs["cpu"])
    oci.push_image(template_copy(tmp, "9.9.9"), refs["gpu"])
    return refs


def write_gallery(path: Path, images: dict, extra: list | None = None) -> Path:
    entries = [
        {"name": "template-backend", "alias": "template", "description": "the template backend",
         "tags": ["llm"], "capabilities": {"default": "cpu-template-backend", "nvidia": "gpu-template-backend"}},
        {"name": "cpu-template-backend", "uri": images["cpu"], "alias": "template", "description": "CPU build"},
        {"name": "gpu-template-backend", "uri": images["gpu"], "alias": "template", "description": "GPU build"},
        *(extra or []),
    ]
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture
def env(tmp_path, images):
    gallery = write_gallery(tmp_path / "gallery.yaml", images)
    return {
        "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "test", "url": str(gallery)}]),
        "LOCALAI_BACKENDS_PATH": str(tmp_path / "backends"),
        "LOCALAI_BACKENDS_SYSTEM_PATH": str(tmp_path / "system-backends"),
        "BACKEND_PYTHON": sys.executable,
    }


def wait_job(server, reply: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(server.url(f"/backends/jobs/{reply['id']}"), timeout=10).json()
        if status["processed"]:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {reply['id']} did not finish")


def apply(server, **body) -> dict:
    response = httpx.post(server.url("/backends/apply"), json=body, timeout=30)
    assert response.status_code == 200, response.text
    return wait_job(server, response.json())


def write_model(models: Path, backend: str) -> None:
    models.mkdir(parents=True, exist_ok=True)
    (models / "bigram.yaml").write_text(yaml.safe_dump({"name": "bigram", "backend": backend,
                                                         "parameters": {"model": "none"}}))


def chat(server) -> str:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="bigram", seed=1, max_tokens=8,
                                           messages=[{"role": "user", "content": "the backend"}])
    return reply.choices[0].message.content


def cli(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localai", "backends", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_install_by_name_then_chat_through_the_alias(localai_server, env, tmp_path):
    write_model(tmp_path / "models", "template")
    server = localai_server(tmp_path / "models", env=env)
    available = httpx.get(server.url("/backends/available")).json()
    assert {e["name"] for e in available} >= {"template-backend", "cpu-template-backend"}
    assert not any(e["installed"] for e in available)
    status = apply(server, id="test@cpu-template-backend")
    assert status["error"] is None and status["progress"] == 100
    installed = {b["Name"]: b for b in httpx.get(server.url("/backends")).json()}
    meta = installed["cpu-template-backend"]["Metadata"]
    assert meta["alias"] == "template" and meta["digest"].startswith("sha256:")
    assert os.access(installed["cpu-template-backend"]["RunFile"], os.X_OK)
    assert chat(server)
    # installing again is a no-op unless forced
    again = apply(server, id="cpu-template-backend")
    assert again["error"] is None
    assert httpx.get(server.url("/backends")).json()[0]["Metadata"]["installed_at"] == meta["installed_at"]


def test_meta_backend_resolves_for_a_forced_capability(localai_server, env, tmp_path):
    write_model(tmp_path / "models", "template-backend")
    server = localai_server(tmp_path / "models", env={**env, "LOCALAI_FORCE_META_BACKEND_CAPABILITY": "nvidia"})
    assert apply(server, id="template-backend")["error"] is None
    installed = {b["Name"]: b for b in httpx.get(server.url("/backends")).json()}
    assert set(installed) == {"gpu-template-backend", "template-backend"}
    assert installed["template-backend"]["IsMeta"]
    assert installed["template-backend"]["Metadata"]["meta_backend_for"] == "gpu-template-backend"
    assert (tmp_path / "backends" / "gpu-template-backend" / "VERSION").read_text().strip() == "9.9.9"
    assert chat(server)
    # deleting the meta backend removes its concrete build too
    delete = httpx.post(server.url("/backends/delete/template-backend")).json()
    assert wait_job(server, delete)["error"] is None
    assert httpx.get(server.url("/backends")).json() == []


def test_cli_install_by_uri_list_and_uninstall(env, images, tmp_path):
    result = cli("install", images["cpu"], "--name", "mine", "--alias", "bigram-engine", env=env)
    assert result.returncode == 0, result.stderr
    listed = json.loads(cli("list", "--json", env=env).stdout)
    assert [(b["Name"], b["Metadata"]["alias"]) for b in listed] == [("mine", "bigram-engine")]
    available = cli("list", "--available", env=env)
    assert "test@template-backend (meta)" in available.stdout
    missing_name = cli("install", images["cpu"], env=env)
    assert missing_name.returncode != 0 and "name is required" in missing_name.stderr
    assert cli("uninstall", "mine", env=env).returncode == 0
    assert json.loads(cli("list", "--json", env=env).stdout) == []
    unknown = cli("uninstall", "mine", env=env)
    assert unknown.returncode != 0 and "no backend found" in unknown.stderr


def test_upgrade_after_a_new_image_is_pushed(localai_server, oci_registry, env, tmp_path):
    ref = f"{oci_registry.host}/localai/upgrade-me:latest"
    oci.push_image(template_copy(tmp_path, "1.0.0"), ref)
    gallery = write_gallery(tmp_path / "gallery2.yaml", {"cpu": ref, "gpu": ref},
                            extra=[{"name": "upgrade-me", "uri": ref, "alias": "up"}])
    env = {**env, "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "test", "url": str(gallery)}])}
    server = localai_server(tmp_path / "models", env=env)
    assert apply(server, id="upgrade-me")["error"] is None
    first = httpx.get(server.url("/backends")).json()[0]["Metadata"]["digest"]
    assert httpx.get(server.url("/backends/upgrades")).json() == {}
    oci.push_image(template_copy(tmp_path, "2.0.0"), ref)
    upgrades = httpx.get(server.url("/backends/upgrades")).json()
    assert upgrades["upgrade-me"]["installed_digest"] == first
    assert upgrades["upgrade-me"]["available_digest"] != first
    reply = httpx.post(server.url("/backends/upgrade/upgrade-me")).json()
    assert wait_job(server, reply)["error"] is None
    after = httpx.get(server.url("/backends")).json()[0]["Metadata"]
    assert after["digest"] == upgrades["upgrade-me"]["available_digest"] and after["alias"] == "up"
    assert (tmp_path / "backends" / "upgrade-me" / "VERSION").read_text().strip() == "2.0.0"


class TarballServer:
    """Serves files from a directory over http on 127.0.0.1."""

    def __init__(self, directory: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()


def tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def test_bad_input_is_refused_and_nothing_is_installed(localai_server, env, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    good = tarball(files / "good.tar.gz", {"run.sh": b"#!/bin/sh\nexit 0\n"})
    tarball(files / "escape.tar.gz", {"run.sh": b"#!/bin/sh\n", "../evil": b"x"})
    tarball(files / "symlink.tar.gz", {"run.sh": b"#!/bin/sh\n"}, links={"lib": "/etc"})
    tarball(files / "norun.tar.gz", {"backend.py": b"print()\n"})
    web = TarballServer(files)
    try:
        from localai.gallery.store import file_sha256

        extra = [
            {"name": "wrong-digest", "uri": f"{web.url}/good.tar.gz", "sha256": "0" * 64},
            {"name": "right-digest", "uri": f"{web.url}/good.tar.gz", "sha256": file_sha256(good)},
            {"name": "escape", "uri": f"{web.url}/escape.tar.gz"},
            {"name": "symlink", "uri": f"{web.url}/symlink.tar.gz"},
            {"name": "no-run", "uri": f"{web.url}/norun.tar.gz"},
            {"name": "dead-registry", "uri": f"127.0.0.1:{closed_port()}/nothing/here:1"},
        ]
        gallery = write_gallery(tmp_path / "gallery3.yaml", {"cpu": "x", "gpu": "y"}, extra=extra)
        env = {**env, "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "test", "url": str(gallery)}])}
        server = localai_server(tmp_path / "models", env=env)
        expected = {"wrong-digest": "sha256 mismatch", "escape": "", "symlink": "", "no-run": "run.sh not found",
                    "dead-registry": ""}
        for name, text in expected.items():
            started = time.monotonic()
            status = apply(server, id=name)
            assert status["error"], name
            assert text in status["error"], status["error"]
            assert time.monotonic() - started < 30, f"{name} took too long to fail"
        assert apply(server, id="right-digest")["error"] is None
        unknown = httpx.post(server.url("/backends/apply"), json={"id": "no-such-backend"})
        assert unknown.status_code == 404 and "no-such-backend" in unknown.json()["error"]["message"]
        empty = httpx.post(server.url("/backends/apply"), json={})
        assert empty.status_code == 400
        assert sorted(p.name for p in (tmp_path / "backends").iterdir()) == ["right-digest"]
        assert not (tmp_path / "evil").exists()
    finally:
        web.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_kernel_killed_mid_install_leaves_nothing_and_retry_works(localai_server, oci_registry, env, tmp_path):
    big = template_copy(tmp_path, "1.0.0")
    (big / "weights.bin").write_bytes(os.urandom(60 * 1024 * 1024))
    ref = f"{oci_registry.host}/localai/big:1"
    oci.push_image(big, ref)
    gallery = write_gallery(tmp_path / "gallery4.yaml", {"cpu": ref, "gpu": ref},
                            extra=[{"name": "big", "uri": ref}])
    env = {**env, "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "test", "url": str(gallery)}])}
    server = localai_server(tmp_path / "models", env=env)
    reply = httpx.post(server.url("/backends/apply"), json={"id": "big"}).json()
    deadline = time.monotonic() + 30
    while httpx.get(server.url(f"/backends/jobs/{reply['id']}")).json()["downloaded_size"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    server.stop(signal.SIGKILL)
    backends = tmp_path / "backends"
    assert not (backends / "big").exists()
    server = localai_server(tmp_path / "models", env=env)
    assert [p.name for p in backends.iterdir()] == []  # the interrupted staging dir is gone
    assert apply(server, id="big")["error"] is None
    assert (backends / "big" / "weights.bin").stat().st_size == 60 * 1024 * 1024


def test_preinstall_at_startup_and_galleries_report(localai_server, env, tmp_path):
    broken = json.dumps([{"name": "test", "url": json.loads(env["LOCALAI_BACKEND_GALLERIES"])[0]["url"]},
                         {"name": "gone", "url": str(tmp_path / "missing.yaml")}])
    write_model(tmp_path / "models", "template")
    server = localai_server(tmp_path / "models", env={
        **env, "LOCALAI_BACKEND_GALLERIES": broken,
        "LOCALAI_EXTERNAL_BACKENDS": "cpu-template-backend,does-not-exist"})
    deadline = time.monotonic() + 60
    while httpx.get(server.url("/readyz")).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [b["Name"] for b in httpx.get(server.url("/backends")).json()] == ["cpu-template-backend"]
    assert "does-not-exist" in server.log()
    galleries = {g["name"]: g for g in httpx.get(server.url("/backends/galleries")).json()}
    assert galleries["test"]["error"] is None and galleries["gone"]["error"]
    assert chat(server)


def test_job_events_stream(localai_server, env, tmp_path):
    server = localai_server(tmp_path / "models", env=env)
    seen = []

    def listen():
        with httpx.stream("GET", server.url("/backends/events"), timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["processed"]:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(0.3)
    apply(server, id="cpu-template-backend")
    thread.join(30)
    assert seen and seen[-1]["processed"] and seen[-1]["error"] is None
    assert seen[-1]["gallery_element_name"] == "cpu-template-backend"


def test_cli_package_push_and_ocifile_install(oci_registry, env, tmp_path):
    source = template_copy(tmp_path, "3.0.0")
    ref = f"{oci_registry.host}/authors/my-backend:3.0"
    archive = tmp_path / "my-backend.tar"
    packaged = subprocess.run([sys.executable, "-m", "localai", "backends", "package", str(source), "--tag", ref,
                               "--push", "--output", str(archive)], capture_output=True, text=True, timeout=120)
    assert packaged.returncode == 0, packaged.stderr
    assert oci.remote_digest(ref) in packaged.stdout
    assert cli("install", f"ocifile://{archive}", env=env).returncode == 0
    assert cli("install", ref, "--name", "pushed", env=env).returncode == 0
    listed = {b["Name"]: b["Metadata"] for b in json.loads(cli("list", "--json", env=env).stdout)}
    assert set(listed) == {"my-backend", "pushed"}
    assert listed["pushed"]["digest"] == oci.remote_digest(ref)
    norun = tmp_path / "norun"
    norun.mkdir()
    refused = subprocess.run([sys.executable, "-m", "localai", "backends", "package", str(norun), "--output",
                              str(tmp_path / "x.tar")], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "run.sh" in refused.stderr


def test_open_event_stream_does_not_hold_up_shutdown(localai_server, env, tmp_path):
    server = localai_server(tmp_path / "models", env=env)
    opened = threading.Event()

    def listen():
        with httpx.stream("GET", server.url("/backends/events"), timeout=60) as response:
            opened.set()
            for _ in response.iter_lines():
                pass

    threading.Thread(target=listen, daemon=True).start()
    assert opened.wait(10)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 8
