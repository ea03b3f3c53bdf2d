"""Schemathesis against a live ``local-ai run`` (echo backend): every operation of the server's own
``/openapi.json`` is fuzzed with valid and invalid input; no 5xx, and every response matches the
documented status codes, media types and schemas (issue 7)."""

from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from localai.app import create_app
from localai.settings import Settings
from localai.testing.server import LocalAIServer, echo_backend_script

MODELS = {"echo-chat": ["chat", "completion"], "echo-embed": ["embeddings"], "echo-img": ["image"],
          "echo-tts": ["tts"], "echo-stt": ["transcript"], "echo-rerank": ["rerank"]}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXCLUDED = {"GET /backends/events", "GET /models/events"}  # endless event streams
MAX_EXAMPLES = int(os.environ.get("LOCALAI_FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("LOCALAI_FUZZ_RANDOM") == "1"  # explore new inputs instead of the fixed sequence


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    script = echo_backend_script(root / "echo")
    models = root / "models"
    models.mkdir()
    for name, usecases in MODELS.items():
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, "known_usecases": usecases}))
    (root / "home").mkdir()
    # no gallery reaches the network, no installed plugin (and its models) joins in, every path is temporary
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{script}", "LOCALAI_BACKEND_GALLERIES": "[]",
           "LOCALAI_GALLERIES": "[]", "LOCALAI_LOAD_PLUGINS": "", "HOME": str(root / "home"),
           "LOCALAI_BACKENDS_PATH": str(root / "backends"), "LOCALAI_BACKENDS_SYSTEM_PATH": str(root / "system"),
           "LOCALAI_GENERATED_CONTENT_PATH": str(root / "generated"), "LOCALAI_UPLOAD_PATH": str(root / "uploads")}
    with LocalAIServer(models, env=env) as srv:
        yield srv


def test_openapi_document_lists_every_route(server):
    doc = httpx.get(server.url("/openapi.json")).json()
    assert all(plugin["builtin"] for plugin in httpx.get(server.url("/plugins")).json())  # hermetic
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path in ("/v1/chat/completions", "/chat/completions", "/v1/audio/speech", "/backends/apply",
                 "/models/jobs/{job_id}", "/generated-images/{name}", "/metrics", "/openapi.json"):
        assert path in paths, path
    assert not any(p.startswith(("/ui", "/static")) or p == "/" for p in paths)
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"}
    assert {"ChatMessage", "Error", "SpeechRequest"} <= set(doc["components"]["schemas"])
    form = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["format"] == "binary"
    assert "audio/wav" in paths["/tts"]["post"]["responses"]["200"]["content"]


async def test_openapi_json_needs_no_key(tmp_path):
    app = create_app(Settings(models_path=tmp_path / "models", backends_path=tmp_path / "backends",
                              backends_system_path=None, api_keys=["secret"]))
    client = app.test_client()
    assert (await client.get("/v1/models")).status_code == 401
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = (await response.get_json())["paths"]
    assert paths["/healthz"]["get"]["security"] == [] and "security" not in paths["/v1/models"]["get"]


def test_fuzz_every_operation(server):
    schema = schemathesis.openapi.from_url(server.url("/openapi.json"))
    session = requests.Session()
    counts: dict[str, int] = {}
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    fuzz_settings = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))

    labels = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in EXCLUDED:
            continue
        labels.add(label)
        strategies = {"positive": operation.as_strategy(generation_mode=GenerationMode.POSITIVE)}
        if operation.body or list(operation.iter_parameters()):
            strategies["negative"] = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        examples = schema.get_strategies_from_examples(operation)  # the configured models' names
        if examples:
            strategies["examples"] = st.one_of(examples)
        for mode, strategy in strategies.items():
            @fuzz_settings
            @given(case=strategy)
            def run(case):
                counts[label] = counts.get(label, 0) + 1
                response = case.call_and_validate(base_url=server.base_url, session=session, checks=CHECKS,
                                                  timeout=60)
                statuses[f"{response.status_code // 100}xx"] += 1

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures, report them all
                failures.append(f"{label} [{mode}]: {str(exc)[:1500]}")

    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases over {len(counts)} operations ({dict(sorted(statuses.items()))})")
    assert total > 0 and set(counts) == labels, labels - set(counts)
    assert not failures, "\n\n".join(failures) + "\n\nserver log tail:\n" + server.log()[-2000:]
