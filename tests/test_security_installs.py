"""Installs are a trust boundary (issue 24, items 1, 3 and 4): against a real server, with the
attacker's gallery and files served from 127.0.0.1, no model install may write a config, replace,
claim or delete the operator's files, or write the server's own state; and a config an install
made is held to the operator-only rules however it got onto disk (see SECURITY.md)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.kernel_helpers import wait_job

OPERATOR_WEIGHTS = b"the operator's weights\n"
DATA = b"harmless model data\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def chat(server, model: str) -> httpx.Response:
    return httpx.post(server.url("/v1/chat/completions"), timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


class World:
    """The operator's models dir, the attacker's web server (its gallery and files), and a server."""

    def __init__(self, tmp_path: Path, file_server, echo_backend):
        self.tmp = tmp_path
        self.www = Path(file_server.directory)
        self.files = file_server
        self.pwned = tmp_path / "pwned"
        self.models = tmp_path / "models"
        self.models.mkdir()
        self.echo_yaml = self.models / "echo.yaml"
        self.echo_yaml.write_text(yaml.safe_dump({"name": "echo", "backend": "echo", "parameters": {
            "model": "weights/operator-weights.gguf"}, "known_usecases": ["chat"]}))
        self.operator_model = self.models / "operator-model.yaml"
        self.operator_model.write_text(yaml.safe_dump({"name": "operator-model", "backend": "echo"}))
        self.weights = self.models / "weights" / "operator-weights.gguf"
        self.weights.parent.mkdir()
        self.weights.write_bytes(OPERATOR_WEIGHTS)
        self.operator_files = {p: p.read_bytes() for p in (self.echo_yaml, self.operator_model, self.weights)}
        dropped = {"name": "dropped", "backend": "http",
                   "proxy": {"command": ["sh", "-c", f"touch {self.pwned}; sleep 30"], "upstream_url": ""}}
        self.serve("dropped.yaml", yaml.safe_dump(dropped).encode())
        self.serve("data.bin", DATA)
        self.env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}", "LOCALAI_BACKEND_GALLERIES": "[]",
                    "LOCALAI_GALLERIES": json.dumps([{"name": "evil", "url": file_server.url("/gallery.yaml")}]),
                    "HOME": str(tmp_path / "home"),
                    "LOCALAI_ALLOW_PRIVATE_URLS": "true"}  # the attacker's server is on 127.0.0.1 here
        self.entries: list[dict] = []

    def serve(self, name: str, content: bytes) -> str:
        (self.www / name).write_bytes(content)
        return self.files.url(f"/{name}")

    def entry(self, name: str, *files: tuple[str, str, str], **extra) -> dict:
        """A gallery entry with a harmless config and ``files`` as (filename, served file, sha256)."""
        entry = {"name": name, "config_file": "backend: echo\nknown_usecases: [chat]\nparameters: {model: m}\n",
                 "files": [{"filename": f, "uri": self.files.url(f"/{src}"), "sha256": digest}
                           for f, src, digest in files], **extra}
        self.entries.append(entry)
        return entry

    def start(self, localai_server, **env):
        (self.www / "gallery.yaml").write_text(yaml.safe_dump(self.entries))
        return localai_server(self.models, env={**self.env, **env})

    def assert_operator_files_intact(self) -> None:
        for path, content in self.operator_files.items():
            assert path.read_bytes() == content, path

    def refused_both_ways(self, server, entry: dict, reason: str) -> None:
        """The entry as a URL the request brings (400) and as a gallery entry installed by id (failed job)."""
        url = self.serve(f"{entry['name']}.yaml", yaml.safe_dump(entry).encode())
        direct = httpx.post(server.url("/models/apply"), json={"url": url}, timeout=30)
        assert direct.status_code == 400, direct.text
        assert reason in direct.json()["error"]["message"] and direct.json()["error"]["code"] == "unsafe_path"
        reply = httpx.post(server.url("/models/apply"), json={"id": f"evil@{entry['name']}"}, timeout=30)
        assert reply.status_code == 200, reply.text
        status = wait_job(server, reply.json()["uuid"])
        assert status["error"] and reason in status["error"] and "files[" in status["error"], status
        assert not (self.models / f"{entry['name']}.yaml").exists()


@pytest.fixture
def world(tmp_path, file_server, echo_backend) -> World:
    return World(tmp_path, file_server, echo_backend)


def test_a_downloaded_file_never_becomes_a_config(localai_server, world):
    """Item 1: files[] brings dropped.yaml (a proxy.command config) next to a harmless config."""
    entry = world.entry("drop", ("dropped.yaml", "dropped.yaml", ""))
    nested = world.entry("drop-nested", ("sub/dropped.yml", "dropped.yaml", ""))
    template = world.entry("drop-template", ("chat.tmpl", "dropped.yaml", ""))
    server = world.start(localai_server)
    world.refused_both_ways(server, entry, "never configs")
    world.refused_both_ways(server, nested, "never configs")
    world.refused_both_ways(server, template, "never configs")
    pull = httpx.post(server.url("/api/pull"), json={"model": "drop", "stream": False}, timeout=30)
    assert pull.status_code == 500 and "never configs" in pull.json()["error"], pull.text
    assert [r for r in world.files.requests if r[1] == "dropped.yaml"] == []  # not even fetched
    assert not (world.models / "dropped.yaml").exists() and not (world.models / "sub").exists()
    assert chat(server, "dropped").status_code == 404
    time.sleep(0.5)
    assert not world.pwned.exists()
    world.assert_operator_files_intact()


def test_an_installed_config_is_checked_however_it_got_onto_disk(localai_server, world):
    """A config an install made, later rewritten with proxy.command, or left by an older version's
    install (its ``._gallery_`` record listed dropped.yaml), is never served and never runs."""
    world.entry("harmless", ("harmless/data.bin", "data.bin", sha(DATA)))
    (world.models / "dropped.yaml").write_text((world.www / "dropped.yaml").read_text())
    (world.models / "._gallery_old.yaml").write_text(yaml.safe_dump({"name": "old", "files": ["dropped.yaml"]}))
    server = world.start(localai_server)
    assert wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "harmless"}).json()["uuid"])[
        "error"] is None
    assert chat(server, "harmless").status_code == 200
    installed = world.models / "harmless.yaml"
    installed.write_text(installed.read_text().replace("backend: echo", "backend: http") + yaml.safe_dump(
        {"proxy": {"command": ["sh", "-c", f"touch {world.pwned}"]}}))
    assert "harmless" not in [m["id"] for m in httpx.get(server.url("/v1/models")).json()["data"]]
    broken = {b["source"]: b["error"] for b in httpx.get(server.url("/system")).json()["broken_models"]}
    for name in ("harmless", "dropped"):
        assert "proxy.command" in broken[str(world.models / f"{name}.yaml")], broken
        assert chat(server, name).status_code == 404
    time.sleep(0.5)
    assert not world.pwned.exists()
    assert chat(server, "echo").status_code == 200  # the operator's own config is served as before


def test_installs_cannot_claim_replace_or_delete_the_operators_files(localai_server, world):
    """Item 3: files[] naming the operator's config and weights, without or with another sha256."""
    claim = world.entry("claim", ("echo.yaml", "data.bin", ""), ("weights/operator-weights.gguf", "data.bin", ""))
    claim_weights = world.entry("claim-weights", ("weights/operator-weights.gguf", "data.bin", ""))
    replace = world.entry("replace", ("weights/operator-weights.gguf", "data.bin", sha(DATA)))
    world.entry("harmless", ("harmless/data.bin", "data.bin", sha(DATA)))
    server = world.start(localai_server)
    world.refused_both_ways(server, claim, "never configs")
    world.refused_both_ways(server, claim_weights, "not created by an install")
    world.refused_both_ways(server, replace, "not created by an install")
    assert httpx.post(server.url("/models/delete/claim-weights")).status_code == 404
    # an install may not take the operator's model name; deleting the operator's models is refused
    for body in ({"id": "evil@harmless", "name": "echo"}, {"id": "evil@harmless", "name": "operator-model",
                                                           "force": True}):
        reply = httpx.post(server.url("/models/apply"), json=body)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "operator_model", reply.text
    assert httpx.post(server.url("/models/delete/echo")).json()["error"]["code"] == "operator_model"
    deleted = httpx.request("DELETE", server.url("/api/delete"), json={"model": "echo"})
    assert deleted.status_code == 403 and "operator" in deleted.json()["error"], deleted.text
    world.assert_operator_files_intact()
    assert chat(server, "echo").status_code == 200


def test_reinstalls_need_force_and_shared_files_are_kept_until_unused(localai_server, world):
    world.entry("first", ("shared/data.bin", "data.bin", sha(DATA)))
    world.entry("second", ("shared/data.bin", "data.bin", ""))
    world.entry("different", ("shared/data.bin", "dropped.yaml", sha(b"other content")))
    world.entry("third", ("third/data.bin", "data.bin", sha(DATA)))
    (world.models / "uses-third.yaml").write_text(yaml.safe_dump(  # the operator's model of an installed file
        {"name": "uses-third", "backend": "echo", "parameters": {"model": "third/data.bin"}}))
    server = world.start(localai_server)
    assert wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "first"}).json()["uuid"])[
        "error"] is None
    again = httpx.post(server.url("/models/apply"), json={"id": "first"})
    assert again.status_code == 409 and "force" in again.json()["error"]["message"], again.text
    forced = httpx.post(server.url("/models/apply"), json={"id": "first", "force": True})
    assert wait_job(server, forced.json()["uuid"])["error"] is None
    other = wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "different"}).json()["uuid"])
    assert "model 'first'" in other["error"] and "different content" in other["error"], other
    assert wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "second"}).json()["uuid"])[
        "error"] is None
    shared = world.models / "shared" / "data.bin"
    assert wait_job(server, httpx.post(server.url("/models/delete/first")).json()["uuid"])["error"] is None
    assert shared.read_bytes() == DATA and not (world.models / "first.yaml").exists()
    pulled = httpx.request("DELETE", server.url("/api/delete"), json={"model": "second"})
    assert pulled.status_code == 200, pulled.text
    assert not shared.exists() and not (world.models / "second.yaml").exists()
    assert wait_job(server, httpx.post(server.url("/models/apply"), json={"id": "third"}).json()["uuid"])[
        "error"] is None
    assert wait_job(server, httpx.post(server.url("/models/delete/third")).json()["uuid"])["error"] is None
    assert (world.models / "third" / "data.bin").read_bytes() == DATA  # uses-third still uses it
    world.assert_operator_files_intact()


def test_installs_cannot_write_the_servers_state(localai_server, world):
    """Item 4: files[] naming the Responses store, the KV cache, dot-files and the state dirs."""
    targets = [".localai-data/responses.sqlite3", ".localai-data/installs/echo.json", ".kv-cache/key/slot.bin",
               "x/../.hidden", "kv/key/slot.bin", "backends/evil/run.sh"]
    entries = [world.entry(f"state-{i}", (target, "data.bin", "")) for i, target in enumerate(targets)]
    server = world.start(localai_server, LOCALAI_KV_CACHE_DIR=str(world.models / "kv"),
                         LOCALAI_BACKENDS_PATH=str(world.models / "backends"))
    stored = httpx.post(server.url("/v1/responses"), json={"model": "echo", "input": "remember me"}, timeout=30)
    assert stored.status_code == 200, stored.text
    store = world.models / ".localai-data" / "responses.sqlite3"
    before = store.stat().st_ino
    for entry, target in zip(entries, targets):
        reason = "hidden file" if "." in target.split("/")[0] or ".hidden" in target else "server's own state"
        world.refused_both_ways(server, entry, reason)
    assert store.stat().st_ino == before  # not replaced
    again = httpx.get(server.url(f"/v1/responses/{stored.json()['id']}"))
    assert again.status_code == 200 and again.json()["output"] == stored.json()["output"]
    assert not (world.models / ".kv-cache" / "key").exists() and not (world.models / "kv" / "key").exists()
    assert not (world.models / "backends" / "evil").exists() and not (world.models / ".hidden").exists()
    world.assert_operator_files_intact()
