"""Ollama's model routes: ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``,
``GET /api/version``, ``POST /api/pull`` (installs from the model galleries, streaming Ollama's
progress objects) and ``DELETE /api/delete``; and what the chat routes share with them (names,
``keep_alive``, the error shape ``{"error": "message"}``). See :mod:`.ollama`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from ..api.common import json_body, state
from ..backends.options import context_size
from ..chat.capabilities import model_capabilities
from ..chat.models import find_model, model_usecases
from ..errors import APIError, BadRequest, ContextLengthExceeded, NotFound

bp = Blueprint("dialect_ollama_models", __name__)
OLLAMA_VERSION = "0.12.6"  # the Ollama API level these routes follow (clients compare versions)
NDJSON = "application/x-ndjson"


async def api_error(error: APIError):
    message = error.message
    if isinstance(error, ContextLengthExceeded):  # Ollama's words, with the numbers
        message = (f"the input length exceeds the context length ({error.prompt_tokens} tokens > {error.limit} "
                   "maximum); raise context_size in the model's YAML")
    return Response(orjson.dumps({"error": message}), status=error.status, content_type="application/json",
                    headers=error.headers)


async def http_error(error: HTTPException):
    return Response(orjson.dumps({"error": error.description or error.name}), status=error.code or 500,
                    content_type="application/json")


def install_errors(blueprint: Blueprint) -> None:
    """Errors in Ollama's shape on ``blueprint``'s routes."""
    blueprint.register_error_handler(APIError, api_error)
    blueprint.register_error_handler(HTTPException, http_error)


install_errors(bp)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def request_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def model_arg(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("model is required")
    return name


def tagged(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


# -- model listings --------------------------------------------------------------------------


def model_facts(config) -> dict[str, Any]:
    """Size, digest, modified time and details of a model, from its files."""
    path, size, mtime = "", 0, state().started_at
    try:
        path = config.model_file(state().settings.models_path)
        if path and os.path.isfile(path):
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime
    except (OSError, FileNotFoundError):
        pass
    quant = next((part for part in os.path.basename(path).replace("-", ".").split(".")
                  if part[:1] in "QF" and any(c.isdigit() for c in part)), "")
    details = {"parent_model": "", "format": "gguf" if path.endswith(".gguf") else config.backend_name,
               "family": config.backend_name, "families": [config.backend_name], "parameter_size": "",
               "quantization_level": quant}
    digest = hashlib.sha256(f"{config.name}:{path}:{size}:{mtime}".encode()).hexdigest()
    modified = datetime.fromtimestamp(mtime, timezone.utc).isoformat().replace("+00:00", "Z")
    return {"size": size, "digest": digest, "modified_at": modified, "details": details}


def capabilities(config) -> list[str]:
    usecases = model_usecases(state(), config)
    out = ["completion"] if usecases & {"chat", "completion"} or not usecases else []
    if "embeddings" in usecases:
        out.append("embedding")
    features = set(model_capabilities(state().host, config))
    out += [name for feature, name in (("tools", "tools"), ("images", "vision")) if feature in features]
    return out


@bp.route("/api/tags", methods=["GET"])
async def tags():
    """The installed models, as Ollama lists them."""
    models = []
    for config in state().registry.all():
        facts = model_facts(config)
        models.append({"name": tagged(config.name), "model": tagged(config.name), **facts})
    return Response(orjson.dumps({"models": models}), content_type="application/json")


@bp.route("/api/show", methods=["POST"])
async def show():
    """One model's details, parameters and capabilities."""
    body = request_object(await json_body())
    config = find_config(model_arg(body))
    facts = model_facts(config)
    params = config.parameters
    context = context_size(config, state().settings)
    lines = [f"{key} {value}" for key, value in (("temperature", params.temperature), ("top_p", params.top_p),
                                                  ("top_k", params.top_k), ("num_ctx", context or None))
             if value is not None] + [f'stop "{stop}"' for stop in config.stopwords]
    family = facts["details"]["family"]
    info: dict[str, Any] = {"general.architecture": family, "general.basename": config.name}
    if context:  # Ollama's key is "<architecture>.context_length"
        info[f"{family}.context_length"] = info["context_length"] = context
    return Response(orjson.dumps({
        "modelfile": f"FROM {config.parameters.model}\n", "parameters": "\n".join(lines),
        "template": config.template.chat or "", "details": facts["details"], "model_info": info,
        "capabilities": capabilities(config), "modified_at": facts["modified_at"],
    }), content_type="application/json")


def find_config(name: str):
    config = find_model(state().registry, name)
    if config is None:
        raise NotFound(f"model '{name}' not found")
    return config


@bp.route("/api/ps", methods=["GET"])
async def ps():
    """The loaded models."""
    manager = state().manager
    models = []
    for model in list(manager.loaded.values()):
        facts = model_facts(model.config)
        left = manager.expires_in(model)
        until = time.time() + (10 * 365 * 86400 if left is None else left)
        models.append({"name": tagged(model.name), "model": tagged(model.name), "size": facts["size"],
                       "digest": facts["digest"], "details": facts["details"], "size_vram": 0,
                       "context_length": context_size(model.config, state().settings),
                       "expires_at": datetime.fromtimestamp(until, timezone.utc).isoformat().replace("+00:00", "Z")})
    return Response(orjson.dumps({"models": models}), content_type="application/json")


@bp.route("/api/version", methods=["GET"])
async def version():
    return Response(orjson.dumps({"version": OLLAMA_VERSION}), content_type="application/json")


# -- keep_alive --------------------------------------------------------------------------------


def keep_alive_seconds(value: Any) -> float | None:
    """``keep_alive`` in seconds: a number, or a duration like ``"5m"``, ``"1h"``, ``"30s"``; None if unset
    or negative (keep loaded)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            seconds = float(text[: -len(unit)] if unit else text) * units.get(unit, 1)
        except ValueError:
            raise BadRequest(f"keep_alive: invalid duration {value!r}") from None
    return None if seconds < 0 else seconds


def apply_keep_alive(manager, name: str, seconds: float | None) -> None:
    """Unload ``name`` once it has been idle ``seconds`` (0: as soon as it is idle): the model manager's
    idle watchdog does it."""
    manager.keep_alive(name, seconds)


# -- pull and delete ---------------------------------------------------------------------------


@bp.route("/api/pull", methods=["POST"])
async def pull():
    """Install a model from the model galleries; progress objects stream as NDJSON."""
    body = request_object(await json_body())
    name = model_arg(body)
    gallery, jobs = state().models, state().gallery.jobs
    target = name[:-len(":latest")] if name.endswith(":latest") else name
    roots = list(state().settings.allow_local_urls)  # local files only under --allow-local-urls
    await asyncio.to_thread(gallery.check_request, target, None, {}, roots)  # resolves host names
    entry = await asyncio.to_thread(gallery.resolve, target, None, gallery.url_guard(roots))
    # pulling again updates a model an install made; the operator's models are never replaced (403)
    await asyncio.to_thread(gallery.check_name, entry.name, True)

    def work(job, progress) -> str:
        name = gallery.install(target, progress=progress, cancel=job.cancel_event, local_roots=roots, force=True)
        return f"model {name} installed"

    events = jobs.events()
    job = jobs.submit("model-install", entry.name, work)
    digest = "sha256:" + hashlib.sha256(entry.name.encode()).hexdigest()

    async def progress():
        yield {"status": "pulling manifest"}
        try:
            async for status in events:
                if status["id"] != job.id:
                    continue
                if status["processed"]:
                    if status["error"]:
                        yield {"error": status["error"]}
                        return
                    break
                if status["file_size"]:
                    yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": status["file_size"],
                           "completed": status["downloaded_size"]}
        finally:
            await events.aclose()
        for step in ("verifying sha256 digest", "writing manifest", "success"):
            yield {"status": step}

    if body.get("stream") is False:
        last: dict[str, Any] = {}
        async for last in progress():
            if "error" in last:
                raise APIError(last["error"], status=500)
        return Response(orjson.dumps(last), content_type="application/json")

    async def lines():
        async for item in progress():
            yield orjson.dumps(item) + b"\n"

    response = Response(lines(), content_type=NDJSON)
    response.timeout = None
    return response


@bp.route("/api/delete", methods=["DELETE"])
async def delete():
    """Remove a model an install made (its config and files no other model uses); the operator's: 403."""
    body = request_object(await json_body())
    config = find_config(model_arg(body))
    gallery = state().models
    await asyncio.to_thread(gallery.check_delete, config.name)
    await state().manager.unload(config.name)
    await asyncio.to_thread(gallery.delete, config.name)
    return Response(b"", status=200, content_type="text/plain")


