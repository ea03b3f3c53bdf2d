"""The OpenAI-compatible API of a real ``local-ai run`` with the echo backend, via the openai SDK and httpx."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.kernel_helpers import assert_error_shape, echo_env, write_model
from localai.testing.server import LocalAIServer, echo_backend_script

PLAIN = "echo: user: hello world assistant:"  # the echo of the plain role-prefixed prompt


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    models = root / "models"
    write_model(models, "echo", options=["dim:16"])
    write_model(models, "echo-tmpl", template={"chat": "chatfmt", "completion": "Q: {{ input }}"})
    (models / "chatfmt.tmpl").write_text("{% for m in messages %}{{ m.role }}={{ m.content }} {% endfor %}")
    run_sh = echo_backend_script(root / "backend")
    with LocalAIServer(models, env=echo_env(run_sh), cwd=root) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def hello(**extra):
    return dict(model="echo", messages=[{"role": "user", "content": "hello world"}], **extra)


def test_models_list(client):
    models = {m.id: m for m in client.models.list()}
    assert {"echo", "echo-tmpl"} <= set(models)
    assert models["echo"].object == "model" and models["echo"].owned_by


def test_chat(client):
    reply = client.chat.completions.create(**hello())
    assert reply.object == "chat.completion" and reply.model == "echo"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == PLAIN
    assert choice.finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 5, 9)


def test_chat_uses_the_model_template(client):
    reply = client.chat.completions.create(model="echo-tmpl", messages=[
        {"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: system=S user=hi"


def test_chat_max_tokens_gives_length(client):
    reply = client.chat.completions.create(**hello(max_tokens=2))
    assert reply.choices[0].message.content == "echo: user:"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 2


def test_chat_stop_sequence(client):
    reply = client.chat.completions.create(**hello(stop=["world"]))
    assert reply.choices[0].message.content == "echo: user: hello"
    assert reply.choices[0].finish_reason == "stop"


def test_chat_stream_matches_non_stream(client):
    chunks = list(client.chat.completions.create(**hello(stream=True)))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "echo" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PLAIN
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(PLAIN.split())
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_chat_stream_usage_and_length(client):
    chunks = list(client.chat.completions.create(**hello(stream=True, max_tokens=3,
                                                         stream_options={"include_usage": True})))
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (4, 3)
    assert chunks[-2].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: user: hello"


def test_chat_text_content_parts(client, server):
    reply = client.chat.completions.create(model="echo-tmpl", messages=[
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}]}])
    assert reply.choices[0].message.content == "echo: user=part one two"
    image = {"model": "echo", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    error = assert_error_shape(httpx.post(server.url("/v1/chat/completions"), json=image), 400)
    assert "image_url" in error["message"]


def test_completions(client):
    reply = client.completions.create(model="echo", prompt="one two three")
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "echo: one two three" and reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 4)


def test_completions_list_prompt_and_template(client):
    reply = client.completions.create(model="echo", prompt=["a b", "c"], max_tokens=2)
    assert [(c.index, c.text, c.finish_reason) for c in reply.choices] == [(0, "echo: a", "length"),
                                                                           (1, "echo: c", "length")]
    assert reply.usage.prompt_tokens == 3 and reply.usage.completion_tokens == 4
    templated = client.completions.create(model="echo-tmpl", prompt="why")
    assert templated.choices[0].text == "echo: Q: why"


def test_completions_stream(client):
    chunks = list(client.completions.create(model="echo", prompt="one two three", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_float_base64_and_dimensions(client):
    floats = client.embeddings.create(model="echo", input=["alpha", "beta"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    a, b = (d.embedding for d in floats.data)
    assert len(a) == len(b) == 16 and a != b
    assert sum(v * v for v in a) == pytest.approx(1.0, rel=1e-6)
    single = client.embeddings.create(model="echo", input="alpha", encoding_format="float")
    assert single.data[0].embedding == a  # deterministic
    assert single.usage.prompt_tokens == 1
    decoded = client.embeddings.create(model="echo", input=["alpha", "beta"])  # SDK default: base64
    assert [d.embedding for d in decoded.data] == [pytest.approx(a, rel=1e-6), pytest.approx(b, rel=1e-6)]
    short = client.embeddings.create(model="echo", input="alpha", dimensions=4, encoding_format="float")
    assert short.data[0].embedding == a[:4]


def test_embeddings_raw_base64_and_token_input(server):
    body = {"model": "echo", "input": "alpha", "encoding_format": "base64"}
    response = httpx.post(server.url("/v1/embeddings"), json=body)
    assert isinstance(response.json()["data"][0]["embedding"], str)
    tokens = httpx.post(server.url("/v1/embeddings"), json={"model": "echo", "input": [1, 2, 3]}).json()
    assert len(tokens["data"]) == 1 and len(tokens["data"][0]["embedding"]) == 16
    too_many = httpx.post(server.url("/v1/embeddings"), json={"model": "echo", "input": "a", "dimensions": 17})
    assert assert_error_shape(too_many, 400)["param"] == "dimensions"


def test_unprefixed_routes(server):
    models = httpx.get(server.url("/models")).json()
    assert "echo" in [m["id"] for m in models["data"]]
    reply = httpx.post(server.url("/chat/completions"), json=hello())
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == PLAIN
    completion = httpx.post(server.url("/completions"), json={"model": "echo", "prompt": "x"})
    assert completion.json()["choices"][0]["text"] == "echo: x"


def test_unknown_model_is_404(client, server):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    error = assert_error_shape(info.value.response, 404)
    assert "nope" in error["message"] and error["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")


@pytest.mark.parametrize("content, message_part", [
    (json.dumps({"model": "echo", "messages": []}), "messages"),
    (json.dumps({"model": "echo", "messages": "hi"}), "messages"),
    (json.dumps({"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}), "role"),
    (json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
     "temperature"),
    (json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), "max_tokens"),
    ('{"model": "echo", "messages": [', "JSON"),
    ("[1, 2]", "object"),
    ("", "empty"),
])
def test_bad_requests_are_400(server, content, message_part):
    response = httpx.post(server.url("/v1/chat/completions"), content=content,
                          headers={"content-type": "application/json"})
    error = assert_error_shape(response, 400)
    assert error["type"] == "invalid_request_error"
    assert message_part in error["message"]


def test_bad_request_via_sdk(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=[])
    assert info.value.status_code == 400


def test_unknown_route_is_json_404(server):
    response = httpx.get(server.url("/v1/nothing-here"))
    assert_error_shape(response, 404)
    wrong_method = httpx.get(server.url("/v1/chat/completions"))
    assert_error_shape(wrong_method, 405)


def test_backend_error_is_5xx_with_its_message(client, server):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ERROR_NOW"}])
    error = assert_error_shape(info.value.response, (500, 502))
    assert "echo: requested error" in error["message"]
    # streaming: an error before the first token is a real HTTP error, not a 200
    response = httpx.post(server.url("/v1/chat/completions"),
                          json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "ERROR_NOW"}]})
    assert "echo: requested error" in assert_error_shape(response, (500, 502))["message"]
    # the backend is still fine afterwards
    assert client.chat.completions.create(**hello()).choices[0].message.content == PLAIN


def test_health_ready_version_system(server, client):
    assert httpx.get(server.url("/healthz")).status_code == 200
    ready = httpx.get(server.url("/readyz"))
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert httpx.get(server.url("/version")).json()["version"]
    client.chat.completions.create(**hello())
    info = httpx.get(server.url("/system")).json()
    assert "echo" in info["backends"]
    loaded = {m["id"]: m for m in info["loaded_models"]}
    assert loaded["echo"]["backend"] == "echo" and loaded["echo"]["pid"] > 0
    assert info["broken_models"] == []


def test_default_model_when_omitted(server):
    reply = httpx.post(server.url("/v1/chat/completions"), json={"messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200 and reply.json()["model"] == "echo"
    embedded = httpx.post(server.url("/v1/embeddings"), json={"input": "x"})
    assert embedded.status_code == 200 and embedded.json()["model"] == "echo"


def test_tokenize(server):
    response = httpx.post(server.url("/v1/tokenize"), json={"model": "echo", "content": "a b c"})
    assert response.status_code == 200 and len(response.json()["tokens"]) == 3
