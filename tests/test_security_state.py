"""Stored state is per key, and served files are only what the server made (SECURITY.md, rules 6 and 7),
against a real ``local-ai run`` with two API keys and the echo backend.

Rule 6: with keys A and B, B gets the same 404 as for a missing id when it reads, lists the input
items of, continues from or deletes A's stored response; A still can; the store keeps a keyed hash
of the key, never the key, and a store from before owners keeps opening.
Rule 7: ``/generated-images/`` answers one 404, byte for byte, for every name that is not a
generated image (traversal, encoded traversal, missing files, directories, links out).
"""

from __future__ import annotations

import hashlib
import http.client
import sqlite3
import urllib.parse

import httpx
import openai
import orjson
import pytest
import yaml

A, B = "key-alpha", "key-bravo"
OLD_SCHEMA = """CREATE TABLE responses (
    id TEXT PRIMARY KEY, created REAL NOT NULL, response BLOB NOT NULL, history BLOB NOT NULL, input BLOB NOT NULL)"""


@pytest.fixture
def models(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name, usecases in (("echo", ["chat"]), ("echo-img", ["image"])):
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, "known_usecases": usecases}))
    return models


def env_for(echo_backend, tmp_path, keys: str | None) -> dict[str, str]:
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend}", "LOCALAI_GALLERIES": "[]",
           "LOCALAI_BACKEND_GALLERIES": "[]", "LOCALAI_DATA_PATH": str(tmp_path / "data"),
           "LOCALAI_GENERATED_CONTENT_PATH": str(tmp_path / "generated")}
    if keys:
        env["LOCALAI_API_KEY"] = keys
    return env


@pytest.fixture
def server(localai_server, echo_backend, models, tmp_path):
    return localai_server(models, env=env_for(echo_backend, tmp_path, f"{A},{B}"))


def sdk(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("/v1"), api_key=key, max_retries=0, timeout=30)


def call(server, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url(path), headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs)


def not_found(response: httpx.Response, rid: str) -> dict:
    """The 404's error with the asked id replaced, to compare a foreign id's answer with a missing one's."""
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    return orjson.loads(response.content.replace(rid.encode(), b"<id>"))


def test_another_key_gets_the_missing_id_404_on_every_door(server, tmp_path):
    first = sdk(server, A).responses.create(model="echo", input="alpha secret")
    rid, missing = first.id, "resp_" + "0" * 32

    for method, path in (("GET", "/v1/responses/{}"), ("GET", "/v1/responses/{}/input_items"),
                         ("GET", "/responses/{}"), ("DELETE", "/v1/responses/{}")):
        foreign = call(server, B, method, path.format(rid))
        absent = call(server, B, method, path.format(missing))
        assert not_found(foreign, rid) == not_found(absent, missing), (method, path)
        assert "alpha secret" not in foreign.text
    for stream in (False, True):
        body = {"model": "echo", "input": "what did A say?", "stream": stream}
        foreign = call(server, B, "POST", "/v1/responses", json={**body, "previous_response_id": rid})
        absent = call(server, B, "POST", "/v1/responses", json={**body, "previous_response_id": missing})
        error = not_found(foreign, rid)
        assert error == not_found(absent, missing) and error["error"]["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk(server, B).responses.retrieve(rid)

    # A still has it all: B's delete did nothing
    owner = sdk(server, A)
    assert owner.responses.retrieve(rid).output_text == first.output_text
    assert [item.content[0].text for item in owner.responses.input_items.list(rid).data] == ["alpha secret"]
    follow = owner.responses.create(model="echo", input="more", previous_response_id=rid)
    assert "alpha secret" in follow.output_text
    # and B's own response is B's alone
    own = sdk(server, B).responses.create(model="echo", input="bravo")
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(own.id)
    assert sdk(server, B).responses.retrieve(own.id).id == own.id
    assert call(server, A, "DELETE", f"/v1/responses/{rid}").json()["deleted"] is True
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(rid)

    # the store names owners by a keyed hash: neither the keys nor their plain digests are in it
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("responses.sqlite3*"))
    for key in (A, B):
        assert key.encode() not in stored and hashlib.sha256(key.encode()).hexdigest().encode() not in stored
    with sqlite3.connect(tmp_path / "data" / "responses.sqlite3") as db:
        owners = {row[0] for row in db.execute("SELECT owner FROM responses")}
    assert len(owners) == 2 and None not in owners


@pytest.mark.openai_wire_unchecked  # serves the abridged response object the test itself stored
def test_a_store_from_before_owners_keeps_opening(localai_server, echo_backend, models, tmp_path):
    """An old store (no owner column) opens; without keys its responses behave as before; with keys,
    an old response has no known owner, so no key gets it."""
    data = tmp_path / "data"
    data.mkdir()
    old = {"id": "resp_old", "object": "response", "created_at": 1, "status": "completed", "model": "echo",
           "output": [], "metadata": {}}
    with sqlite3.connect(data / "responses.sqlite3") as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO responses VALUES (?, ?, ?, ?, ?)", ("resp_old", 9e12, orjson.dumps(old),
                   orjson.dumps([{"role": "user", "content": "old turn"}]), orjson.dumps([])))
    db.close()

    open_server = localai_server(models, env=env_for(echo_backend, tmp_path, None))
    assert httpx.get(open_server.url("/v1/responses/resp_old"), timeout=10).json()["id"] == "resp_old"
    client = sdk(open_server, "x")
    follow = client.responses.create(model="echo", input="new turn", previous_response_id="resp_old")
    assert "old turn" in follow.output_text
    assert client.responses.retrieve(follow.id).id == follow.id
    open_server.stop()

    keyed = localai_server(models, env=env_for(echo_backend, tmp_path, f"{A},{B}"))
    for key in (A, B):
        assert call(keyed, key, "GET", "/v1/responses/resp_old").status_code == 404
        assert call(keyed, key, "GET", f"/v1/responses/{follow.id}").status_code == 404


def raw_get(server, path: str, key: str) -> tuple[int, str, bytes]:
    """GET ``path`` byte for byte (httpx would resolve ``..`` segments before sending)."""
    host = urllib.parse.urlsplit(server.base_url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        conn.close()


def test_generated_images_answer_one_404_for_everything_else(server, tmp_path):
    made = sdk(server, A).images.generate(model="echo-img", prompt="a cat", size="16x16", response_format="url")
    name = made.data[0].url.rsplit("/", 1)[1]
    status, kind, body = raw_get(server, f"/generated-images/{name}", A)
    assert (status, kind, body[:8]) == (200, "image/png", b"\x89PNG\r\n\x1a\n")

    images = tmp_path / "generated" / "images"
    (tmp_path / "generated" / "secret.txt").write_text("generated-dir secret")
    (tmp_path / "outside.png").write_bytes(body)
    (images / ("a" * 32 + ".png")).mkdir()  # a directory named like an image
    (images / ("b" * 32 + ".png")).symlink_to(tmp_path / "outside.png")  # a link out, named like an image
    (images / "planted.png").write_bytes(body)  # a file the server did not name
    probes = [
        "..%2fsecret.txt", "..%2fmissing.txt", "%2e%2e%2fsecret.txt", "%2e%2e/secret.txt", "../secret.txt",
        "..%2f..%2foutside.png", "..%2f..%2fmissing.png", "..%5csecret.txt", "%2F" + str(tmp_path / "outside.png"),
        "a" * 32 + ".png", "a" * 32 + ".png/", "b" * 32 + ".png", "c" * 32 + ".png", "planted.png",
        name + "%00", name + "/..", name.upper(), "x" * 5000 + ".png", ".", "%2e", "", "/", "/etc/passwd",
    ]
    answers = {probe: raw_get(server, f"/generated-images/{probe}", A) for probe in probes}
    status, kind, body = answers[probes[0]]
    assert status == 404 and kind == "application/json"
    assert orjson.loads(body)["error"]["message"] == "generated image not found"
    for probe, answer in answers.items():
        assert answer == (status, kind, body), probe
