"""OpenAI's own OpenAPI document as the judge of the OpenAI routes' wire (issue 25).

``problems(method, path, status, content_type, body)`` checks one response against the schema
of its operation in ``tests/data/openai-openapi/openapi.subset.json``: a JSON body against the
response schema, an SSE body event by event against the stream's event schema (a Responses or
transcription event against the member of the union its ``type`` names), an error (4xx/5xx)
against ``ErrorResponse``. ``$ref``s resolve inside the document (jsonschema-rs, 2020-12).
Returns a list of readable problems, empty when the body conforms.
"""

from __future__ import annotations

import array
import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs

DOCUMENT = Path(__file__).parent / "data" / "openai-openapi" / "openapi.subset.json"

# LocalAI serves each route with and without /v1; without it, /models/... are the gallery's
OPERATIONS = [
    (re.compile(r"^(?:/v1)?/models$"), "/models"),
    (re.compile(r"^/v1/models/.+$"), "/models/{model}"),
    (re.compile(r"^(?:/v1)?/chat/completions$"), "/chat/completions"),
    (re.compile(r"^(?:/v1)?/completions$"), "/completions"),
    (re.compile(r"^(?:/v1)?/embeddings$"), "/embeddings"),
    (re.compile(r"^(?:/v1)?/audio/transcriptions$"), "/audio/transcriptions"),
    (re.compile(r"^(?:/v1)?/audio/speech$"), "/audio/speech"),
    (re.compile(r"^(?:/v1)?/responses$"), "/responses"),
    (re.compile(r"^(?:/v1)?/responses/[^/]+$"), "/responses/{response_id}"),
]
# streams the document leaves out: /completions streams its response object, chunk by chunk
COMPLETION_CHUNK = "LocalAITestCompletionChunk"
UNDOCUMENTED_STREAMS = {"/completions": {"$ref": f"#/components/schemas/{COMPLETION_CHUNK}"}}
# bodies OpenAI documents as other than JSON (the document lists only the JSON/SSE forms)
OTHER_MEDIA = {"/audio/speech": ("audio/",),
               "/audio/transcriptions": ("text/plain", "text/vtt", "application/x-subrip")}


@functools.cache
def document() -> dict[str, Any]:
    doc = nullable(json.loads(DOCUMENT.read_text()))
    doc["components"]["schemas"][COMPLETION_CHUNK] = completion_chunk(doc["components"]["schemas"])
    return doc


def completion_chunk(schemas: dict[str, Any]) -> dict[str, Any]:
    """The document does not describe /completions streaming; OpenAI streams ``CreateCompletionResponse``
    objects whose choices have ``finish_reason: null`` until the last, and ``usage: null`` when asked."""
    chunk = json.loads(json.dumps(schemas["CreateCompletionResponse"]))
    choice = chunk["properties"]["choices"]["items"]["properties"]
    choice["finish_reason"] = {"anyOf": [choice["finish_reason"], {"type": "null"}]}
    chunk["properties"]["usage"] = {"anyOf": [chunk["properties"]["usage"], {"type": "null"}]}
    return chunk


def nullable(node: Any) -> Any:
    """OpenAI's 3.1 document still marks some schemas ``nullable: true`` (OpenAPI 3.0), which JSON
    Schema ignores: read each as ``anyOf: [schema, null]``, as OpenAI means it."""
    if isinstance(node, list):
        return [nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        return {"anyOf": [node, {"type": "null"}]}
    return node


@functools.cache
def validator(ref: str) -> jsonschema_rs.Draft202012Validator:
    """A validator for ``#/components/schemas/<name>`` (or any pointer) with the document's components."""
    return jsonschema_rs.Draft202012Validator({"$ref": ref, "components": document()["components"]})


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@functools.cache
def union_members(ref: str) -> dict[str, str]:
    """Event ``type`` → member schema ref of a stream event union (anyOf/oneOf of ``$ref``s)."""
    union = resolve({"$ref": ref})
    members = {}
    for option in union.get("anyOf") or union.get("oneOf") or []:
        kind = resolve(option).get("properties", {}).get("type", {})
        for name in kind.get("enum") or ([kind["const"]] if "const" in kind else []):
            members[name] = option["$ref"]
    return members


def operation(method: str, path: str) -> str | None:
    """The document's path template for a LocalAI path (None: not an OpenAI route this checks)."""
    for pattern, template in OPERATIONS:
        if pattern.match(path):
            ops = document()["paths"][template]
            return template if method.lower() in ops else None
    return None


def schema_errors(ref: str, instance: Any, where: str) -> list[str]:
    return [f"{where}: {error.message} at /{'/'.join(map(str, error.instance_path))}"
            for error in validator(ref).iter_errors(instance)]


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each event of a ``text/event-stream`` body."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            events.append((name, "\n".join(data)))
    return events


def event_problems(ref: str, name: str | None, data: str, where: str) -> list[str]:
    if data == "[DONE]":
        return []
    try:
        event = json.loads(data)
    except ValueError:
        return [f"{where}: event data is not JSON: {data[:200]!r}"]
    if isinstance(event, dict) and set(event) == {"error"}:  # an error mid-stream (chat, completions)
        return schema_errors("#/components/schemas/ErrorResponse", event, where)
    members = union_members(ref)
    if members:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind not in members:
            return [f"{where}: event type {kind!r} is not one of the documented events"]
        if name is not None and name != kind:
            return [f"{where}: SSE event name {name!r} differs from its type {kind!r}"]
        ref = members[kind]
    return schema_errors(ref, event, where)


def base64_embeddings(instance: Any, where: str) -> list[str]:
    """``encoding_format: base64`` answers each vector as base64 of float32s, which OpenAI sends and
    its SDK decodes but the document's ``Embedding`` (an array) leaves out: check it, then as floats."""
    out = []
    for item in instance.get("data") or [] if isinstance(instance, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("embedding"), str):
            try:
                raw = base64.b64decode(item["embedding"], validate=True)
                item["embedding"] = array.array("f", raw).tolist()
            except ValueError as exc:
                out.append(f"{where}: embedding {item.get('index')} is not base64 of float32s: {exc}")
    return out


def problems(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """What in this response differs from OpenAI's document ([] when it conforms or is not checked)."""
    template = operation(method, path)
    if template is None:
        return []
    where = f"{method} {path} {status}"
    media = content_type.split(";")[0].strip().lower()
    if status >= 400:
        if media != "application/json":
            return [f"{where}: an error must be JSON, not {content_type!r}: {body[:200]!r}"]
        return schema_errors("#/components/schemas/ErrorResponse", json.loads(body), where)
    responses = document()["paths"][template][method.lower()]["responses"]
    content = responses.get(str(status), {}).get("content")
    if content is None:
        return [] if str(status) in responses else [f"{where}: status {status} is not documented"]
    schema = content.get(media, {}).get("schema")
    if media == "text/event-stream":
        schema = schema or UNDOCUMENTED_STREAMS.get(template)
    if schema is None:
        if media.startswith(OTHER_MEDIA.get(template, ())):
            return []
        return [f"{where}: media type {content_type!r} is not documented ({', '.join(content)})"]
    if media == "text/event-stream":
        out = []
        for number, (name, data) in enumerate(sse_events(body.decode("utf-8"))):
            out += event_problems(schema["$ref"], name, data, f"{where} event {number}")
        return out
    if media == "application/json":
        refs = [option["$ref"] for option in schema.get("oneOf", [])] or [schema.get("$ref")]
        if None in refs:
            return []  # an inline non-JSON schema (binary)
        instance = json.loads(body)
        errors = base64_embeddings(instance, where) if template == "/embeddings" else []
        # a oneOf of objects that do not exclude each other's fields: the body must match one
        found = [errors + schema_errors(ref, instance, where) for ref in refs]
        return [] if any(not errors for errors in found) else min(found, key=len)
    return []
