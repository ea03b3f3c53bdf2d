"""``GET /openapi.json``: an OpenAPI 3.1 description of the app, built at request time from its
URL map, so every registered route (``/v1`` twins and plugin routes included) is listed.

Request bodies come from the pydantic models in ``REQUESTS`` (adding a route: one line there);
responses default to a JSON object, with the exceptions in ``RESPONSES``; every error is the
OpenAI shape ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import inspect
import re
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, current_app

from .. import __version__
from ..auth import is_public
from .audio import TRANSCRIPT_FORMATS, SpeechRequest
from .common import json_response
from .images import ImageRequest
from .model_gallery import ModelApplyRequest
from .rerank import RerankRequest
from .schemas import (BackendApplyRequest, ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                      ModelRequest, TokenizeRequest)

bp = Blueprint("openapi", __name__)

MULTIPART_AUDIO = "multipart/audio"

# endpoint (without the "_unprefixed" of /v1 twins) -> request body model
REQUESTS: dict[str, type[BaseModel] | str] = {
    "openai_chat.chat_completions": ChatCompletionRequest,
    "openai_chat.completions": CompletionRequest,
    "openai.embeddings": EmbeddingRequest,
    "images.generate_images": ImageRequest,
    "audio.speech": SpeechRequest,
    "audio.tts": SpeechRequest,
    "audio.transcriptions": MULTIPART_AUDIO,
    "audio.translations": MULTIPART_AUDIO,
    "rerank.rerank": RerankRequest,
    "system.backend_load": ModelRequest,
    "system.backend_shutdown": ModelRequest,
    "system.tokenize": TokenizeRequest,
    "backends.apply": BackendApplyRequest,
    "model_gallery.apply": ModelApplyRequest,
}

OBJECT = {"application/json": {"type": "object"}}
ARRAY = {"application/json": {"type": "array"}}
TEXT = {"type": "string"}
BINARY = {"type": "string", "format": "binary"}
# one server-sent event: ``data:`` is a JSON object (a chunk, a status, an error) or ``[DONE]``
JSON_TEXT = {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}}
EVENT = {"type": "object", "required": ["data"],
         "properties": {"data": {"anyOf": [{"const": "[DONE]"}, JSON_TEXT]}}}
EVENTS = {"text/event-stream": EVENT}

# endpoint -> {status: {media type: schema}}; anything not listed answers 200 with a JSON object
RESPONSES: dict[str, dict[int, dict[str, Any]]] = {
    "openai_chat.chat_completions": {200: {**OBJECT, **EVENTS}},
    "openai_chat.completions": {200: {**OBJECT, **EVENTS}},
    "audio.speech": {200: {t: BINARY for t in ("audio/wav", "audio/mpeg", "audio/flac", "audio/pcm")}},
    "audio.tts": {200: {t: BINARY for t in ("audio/wav", "audio/mpeg", "audio/flac", "audio/pcm")}},
    "audio.transcriptions": {200: {**OBJECT, "text/plain": TEXT}},
    "audio.translations": {200: {**OBJECT, "text/plain": TEXT}},
    "images.generated_image": {200: {"image/png": BINARY}},
    "backends.installed": {200: ARRAY},
    "backends.available": {200: ARRAY},
    "backends.galleries": {200: ARRAY},
    "backends.upgrades": {200: OBJECT},
    "backends.events": {200: EVENTS},
    "model_gallery.available": {200: ARRAY},
    "model_gallery.galleries": {200: ARRAY},
    "model_gallery.events": {200: EVENTS},
    "system.plugins": {200: ARRAY},
    "system.healthz": {200: {"text/html": TEXT}},
    "system.readyz": {200: OBJECT, 503: OBJECT},
    "metrics": {200: {"text/plain": TEXT}},
}

ERROR_STATUSES = (400, 401, 404, 405, 413, 422, 500, 501, 502, 503, 504)
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "integer"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
AUDIO_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": BINARY,
        "model": TEXT,
        "language": TEXT,
        "prompt": TEXT,
        "temperature": {"type": "number"},
        "response_format": {"type": "string", "enum": list(TRANSCRIPT_FORMATS)},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["word", "segment"]}},
    },
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "xiApiKey": {"type": "apiKey", "in": "header", "name": "xi-api-key"},
}
CONVERTER_TYPES = {"IntegerConverter": {"type": "integer"}, "FloatConverter": {"type": "number"}}
RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def documented(endpoint: str) -> bool:
    """Every route but the web UI's pages and static files."""
    return not (endpoint.startswith("ui.") or endpoint == "static" or endpoint.endswith(".static"))


def model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to ``model``; its schema and its definitions go into ``components``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def request_body(spec: type[BaseModel] | str, components: dict[str, Any]) -> dict[str, Any]:
    if spec == MULTIPART_AUDIO:
        content = {"multipart/form-data": {"schema": AUDIO_FORM, "encoding": {"file": {"contentType": "*/*"}}}}
    else:
        content = {"application/json": {"schema": model_schema(spec, components)}}
    return {"required": True, "content": content}


def responses(endpoint: str) -> dict[str, Any]:
    documented_statuses = RESPONSES.get(endpoint, {200: OBJECT})
    result: dict[str, Any] = {}
    for status, media in documented_statuses.items():
        result[str(status)] = {"description": HTTPStatus(status).phrase,
                               "content": {kind: {"schema": schema} for kind, schema in media.items()}}
    for status in ERROR_STATUSES:
        result.setdefault(str(status), {"$ref": "#/components/responses/Error"})
    return result


def operation(rule, method: str, components: dict[str, Any]) -> dict[str, Any]:
    endpoint = rule.endpoint.removesuffix("_unprefixed")
    view = current_app.view_functions.get(rule.endpoint)
    doc = inspect.getdoc(view) or ""
    op: dict[str, Any] = {"operationId": f"{method.lower()}:{rule.rule}", "tags": [endpoint.partition(".")[0]],
                          "summary": doc.splitlines()[0] if doc else endpoint, "responses": responses(endpoint)}
    params = [{"name": name, "in": "path", "required": True,
               "schema": CONVERTER_TYPES.get(type(conv).__name__, {"type": "string", "minLength": 1})}
              for name, conv in rule._converters.items()]
    if params:
        op["parameters"] = params
    if endpoint in REQUESTS and method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = request_body(REQUESTS[endpoint], components)
    if is_public(method, rule.rule):
        op["security"] = []
    return op


def add_model_examples(components: dict[str, Any]) -> None:
    """List the configured models' names as examples of every request's ``model``."""
    names = sorted(config.name for config in current_app.extensions["localai"].registry.all())
    for schema in components.values():
        model = schema.get("properties", {}).get("model")
        if names and model is not None:
            model["examples"] = names


def document() -> dict[str, Any]:
    """The OpenAPI document of the running app."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule):
        if not documented(rule.endpoint):
            continue
        item = paths.setdefault(RULE_ARG.sub(r"{\1}", rule.rule), {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            item[method.lower()] = operation(rule, method, components)
    add_model_examples(components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "LocalAI (Python)", "version": __version__,
                 "description": "OpenAI-compatible API of LocalAI for Python."},
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {"Error": {"description": "An error in the OpenAI shape", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{"bearer": []}, {"apiKey": []}, {"xiApiKey": []}],
    }


@bp.get("/openapi.json")
async def openapi_json():
    """The OpenAPI 3.1 description of this server."""
    return json_response(document())
