"""Issue 24, items 2, 8 and 10 against a real server: one notion of "local" for the checks and the
readers, no fetch of loopback/private addresses for API callers, ``pkg://`` names a package member
only, and errors that carry no fetched content and read the same for existing and missing paths,
open and closed ports (SECURITY.md, "URLs an API request names")."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from tests.kernel_helpers import free_port, wait_job

SECRET = "SECRET-7f3a9c"
# not a YAML mapping: a YAML parser's message would quote it
SECRET_PAGE = f"status: ok\n  token: {SECRET}: [unclosed\n"


class Internal(BaseHTTPRequestHandler):
    """An "internal service" on 127.0.0.1: a status page, a 404 with a body, a redirect to itself."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        if "redirect" in self.path:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 200 if self.path.startswith(("/status", "/a/")) else 404
        body = (self.server.bodies.get(self.path) or SECRET_PAGE).encode()
        self.send_response(status, f"{SECRET} reason")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def internal():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    server.daemon_threads = True
    server.paths, server.bodies, server.redirect_to = [], {}, ""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def banner_port():
    """An open port that answers with a non-HTTP banner (an SSH-like service)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(f"SSH-2.0-{SECRET}\r\n".encode())

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()



@pytest.fixture
def env(echo_backend, tmp_path):
    return {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}", "LOCALAI_GALLERIES": "[]",
            "LOCALAI_BACKEND_GALLERIES": "[]", "HOME": str(tmp_path / "home")}


@pytest.fixture
def models(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "echo.yaml").write_text(yaml.safe_dump({
        "name": "echo", "backend": "echo", "parameters": {"model": "echo"}, "known_usecases": ["chat"]}))
    return models


def apply(server, **body) -> httpx.Response:
    return httpx.post(server.url("/models/apply"), json=body, timeout=30)


def pull(server, model: str) -> httpx.Response:
    return httpx.post(server.url("/api/pull"), json={"model": model, "stream": False}, timeout=30)


def message(reply: httpx.Response) -> str:
    error = reply.json()["error"]
    return error if isinstance(error, str) else error["message"]



# -- item 2: one notion of local -----------------------------------------------------------------


def test_a_path_with_a_scheme_like_part_is_local_and_refused(localai_server, env, models, tmp_path):
    """Item 2: ``<models>/x://../../home/u/.aws/credentials`` was "remote" to the check and a path
    to the reader, and the 400 quoted the file. Now it is a local path outside every allowed root:
    refused, for ``url``, ``id`` and ``/api/pull``, even with ``--allow-local-urls <models>``."""
    secret = tmp_path / "home" / "u" / ".aws" / "credentials"
    secret.parent.mkdir(parents=True)
    secret.write_text(f"[default]\naws_secret_access_key = {SECRET}\n")
    (models / "x:").mkdir()  # what a failed install with files[].filename "x:/f" left behind
    server = localai_server(models, env=env, args=["--allow-local-urls", str(models)])
    attack = f"{models}/x://../../home/u/.aws/credentials"
    missing = f"{models}/x://../../home/u/.aws/nothing-here"
    for name, send in (("url", lambda v: apply(server, url=v)), ("id", lambda v: apply(server, id=v)),
                       ("pull", lambda v: pull(server, v))):
        found, absent = send(attack), send(missing)
        assert found.status_code == absent.status_code == 400, (name, found.text)
        assert SECRET not in found.text and "aws_secret" not in found.text
        if name != "pull":
            assert found.json()["error"]["code"] == "local_url_not_allowed"
        # an existing and a missing path read the same, but for the path itself
        assert message(found).replace(attack, "P") == message(absent).replace(missing, "P"), name
    for variant in (f"file://{attack}", f"x:{secret}", f"x://{secret}", f"file://localhost{secret}",
                    "~/../home/u/.aws/credentials"):
        reply = apply(server, url=variant)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "local_url_not_allowed", variant
        assert SECRET not in reply.text
    assert sorted(p.name for p in models.glob("*.yaml")) == ["echo.yaml"]


def test_allowed_local_files_are_read_but_never_quoted(localai_server, env, models, tmp_path):
    """Under ``--allow-local-urls DIR`` a file may be read, but an error names the URL and a class:
    a directory, a device and a missing file read the same; content is never quoted."""
    allowed = tmp_path / "configs"
    allowed.mkdir()
    (allowed / "secret.yaml").write_text(SECRET_PAGE)
    (allowed / "list.yaml").write_text(f"- {SECRET}\n")
    (allowed / "binary.yaml").write_bytes(b"\xff\xfe" + SECRET.encode())
    (allowed / "sub").mkdir()
    server = localai_server(models, env={**env, "LOCALAI_ALLOW_LOCAL_URLS": f"{allowed} /dev"}, args=[])
    for name in ("secret.yaml", "list.yaml", "binary.yaml"):
        reply = apply(server, url=f"file://{allowed / name}")
        assert reply.status_code == 400 and SECRET not in reply.text, reply.text
    assert "not valid YAML" in message(apply(server, url=str(allowed / "secret.yaml")))
    unreadable = {}
    for path in (allowed / "sub", allowed / "missing.yaml", "/dev/zero"):
        reply = apply(server, url=str(path))
        assert reply.status_code == 400, reply.text
        unreadable[str(path)] = message(reply).replace(str(path), "P")
    assert len(set(unreadable.values())) == 1, unreadable
    assert "not found or not readable" in next(iter(unreadable.values()))


# -- item 8: SSRF ---------------------------------------------------------------------------------


def test_internal_urls_are_refused_before_any_request(localai_server, env, models, internal, banner_port):
    """Item 8: ``/models/apply {"url": "http://127.0.0.1:<internal>/status"}`` quoted the page and
    errors mapped open ports. Now loopback is refused before connecting, the same for every port."""
    server = localai_server(models, env=env)
    replies = {
        "url": apply(server, url=f"{internal.url}/status"),
        "id": apply(server, id=f"{internal.url}/status.yaml"),
        "model file": apply(server, id=f"{internal.url}/a/model.gguf"),
        "pull": pull(server, f"{internal.url}/status.yaml"),
        "localhost": apply(server, url=internal.url.replace("127.0.0.1", "localhost") + "/status"),
        "metadata": apply(server, url="http://169.254.169.254/latest/meta-data/"),
        "oci": apply(server, id=f"oci://127.0.0.1:{internal.server_address[1]}/m/x:1"),
    }
    for name, reply in replies.items():
        assert reply.status_code == 400, (name, reply.text)
        assert SECRET not in reply.text and "private" in message(reply), (name, reply.text)
        if name != "pull":
            assert reply.json()["error"]["code"] == "url_not_allowed", name
    assert internal.paths == []
    # an open HTTP port, an open non-HTTP port and a closed port answer alike
    ports = {internal.server_address[1], banner_port, free_port()}
    texts = {message(apply(server, url=f"http://127.0.0.1:{p}/status")).replace(str(p), "PORT") for p in ports}
    assert len(texts) == 1, texts
    assert internal.paths == []


def test_a_redirect_to_an_internal_address_is_refused(localai_server, env, models, internal, file_server):
    """A trusted host (here ``HF_ENDPOINT``, the operator's) redirecting to 127.0.0.1 is refused at
    the redirect: each hop is checked, not only the first URL."""
    internal.redirect_to = f"{internal.url}/status"
    endpoint = internal.url.replace("127.0.0.1", "localhost")
    server = localai_server(models, env={**env, "HF_ENDPOINT": endpoint})
    reply = apply(server, url="hf://acme/repo/redirect.yaml")
    assert reply.status_code == 400 and SECRET not in reply.text, reply.text
    assert "private" in message(reply)
    assert internal.paths == ["/acme/repo/resolve/main/redirect.yaml"]  # the trusted hop only


def test_a_brought_configs_files_cannot_reach_internal_addresses(localai_server, env, models, internal, tmp_path):
    """``files[].uri`` of a config the request brought (here from an allowed local dir) may not
    download an internal page into the models dir (where a template could read it back)."""
    allowed = tmp_path / "configs"
    allowed.mkdir()
    (allowed / "entry.yaml").write_text(yaml.safe_dump({
        "name": "leak", "config_file": "backend: echo\nparameters: {model: leak/page.bin}\n",
        "files": [{"filename": "leak/page.bin", "uri": f"{internal.url}/status"}]}))
    server = localai_server(models, env=env, args=["--allow-local-urls", str(allowed)])
    reply = apply(server, url=f"file://{allowed / 'entry.yaml'}")
    if reply.status_code == 200:
        status = wait_job(server, reply.json()["uuid"])
        assert status["error"] and "private" in status["error"] and SECRET not in status["error"], status
    else:
        assert reply.status_code == 400 and "private" in message(reply), reply.text
    assert internal.paths == [] and not (models / "leak" / "page.bin").exists()
    assert not (models / "leak.yaml").exists()


def test_with_private_urls_allowed_errors_still_carry_no_content(localai_server, env, models, internal, banner_port):
    """``--allow-private-urls`` lets the fetch happen; the reply names the URL and the status or
    class, never the body, a server's reason phrase or a banner."""
    server = localai_server(models, env=env, args=["--allow-private-urls"])
    page = apply(server, url=f"{internal.url}/status")
    assert page.status_code == 400 and "not valid YAML" in message(page) and SECRET not in page.text
    internal.bodies["/a/entry.yaml"] = yaml.safe_dump({"name": "x", "files": [{"filename": ["f"], "uri": SECRET}]})
    invalid = apply(server, url=f"{internal.url}/a/entry.yaml")
    assert invalid.status_code == 400 and "not a valid model entry" in message(invalid), invalid.text
    assert SECRET not in invalid.text
    missing = apply(server, url=f"{internal.url}/nothing.yaml")
    assert missing.status_code == 400 and "HTTP 404" in message(missing) and SECRET not in missing.text
    port = free_port()
    banner = apply(server, url=f"http://127.0.0.1:{banner_port}/status")
    closed = apply(server, url=f"http://127.0.0.1:{port}/status")
    assert banner.status_code == closed.status_code == 400 and SECRET not in banner.text
    assert "could not fetch" in message(banner)
    assert message(banner).replace(str(banner_port), "P") == message(closed).replace(str(port), "P")
    job = apply(server, id=f"{internal.url}/nothing.gguf")
    assert job.status_code == 200
    status = wait_job(server, job.json()["uuid"])
    assert "HTTP 404" in status["error"] and SECRET not in status["error"], status
    assert pull(server, f"{internal.url}/status.yaml").status_code == 400


def test_gallery_errors_name_the_url_not_the_content(localai_server, env, models, internal):
    internal.bodies["/a/gallery.yaml"] = SECRET_PAGE
    galleries = [{"name": "broken", "url": f"{internal.url}/a/gallery.yaml"},
                 {"name": "gone", "url": f"{internal.url}/gone.yaml"}]
    server = localai_server(models, env={**env, "LOCALAI_GALLERIES": json.dumps(galleries)})
    listed = {g["name"]: g["error"] for g in httpx.get(server.url("/models/galleries"), timeout=30).json()}
    assert "not valid YAML" in listed["broken"] and "HTTP 404" in listed["gone"], listed
    unknown = apply(server, id="no-such-model")
    assert unknown.status_code == 404
    assert SECRET not in json.dumps(listed) and SECRET not in unknown.text


# -- item 10: pkg:// names a package member only --------------------------------------------------


def test_pkg_uris_name_package_members_only(localai_server, env, models, tmp_path):
    """Item 10: ``pkg://localai//<absolute path>`` passed the operator-only check for
    ``parameters.model`` and ``/api/tags`` showed the file's size. Now it is refused by name, and
    the resolver does not follow it either (an operator's config shows size 0)."""
    target = tmp_path / "big.bin"
    target.write_bytes(b"x" * 12345)
    allowed = tmp_path / "configs"
    allowed.mkdir()
    (allowed / "cfg.yaml").write_text("name: cfg\nbackend: echo\nparameters: {model: echo}\n")
    server = localai_server(models, env=env, args=["--allow-local-urls", str(allowed)])
    for bad in (f"pkg://localai/{target}", f"pkg://localai/../../{target.name}", f"pkg:///{target}",
                "pkg://localai/a/./b", "pkg://local.ai/x"):
        reply = apply(server, url=f"file://{allowed / 'cfg.yaml'}", overrides={"parameters": {"model": bad}})
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.json()["error"]["param"] == "parameters.model", (bad, reply.text)
        (allowed / "brought.yaml").write_text(yaml.safe_dump({"name": "brought", "parameters": {"model": bad}}))
        reply = apply(server, url=str(allowed / "brought.yaml"))
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "parameters.model", (bad, reply.text)
    good = apply(server, url=f"file://{allowed / 'cfg.yaml'}", name="pkgok",
                 overrides={"parameters": {"model": "pkg://localai/galleries/models.yaml"}})
    assert good.status_code == 200, good.text
    (models / "op.yaml").write_text(yaml.safe_dump({
        "name": "op", "backend": "echo", "parameters": {"model": f"pkg://localai/{target}"}}))
    server.stop()
    server = localai_server(models, env=env)
    tags = {m["name"]: m for m in httpx.get(server.url("/api/tags"), timeout=10).json()["models"]}
    assert tags["op:latest"]["size"] == 0
