"""Ollama's API on the kernel's chat core, for the ``ollama`` clients, Open WebUI and editor
plugins (``OLLAMA_HOST=http://127.0.0.1:8080``).

``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``, ``GET /api/version``, ``POST /api/chat``
and ``POST /api/generate`` (NDJSON streaming unless ``"stream": false``; ``options``, ``format``
``"json"`` or a JSON schema, ``tools`` with ``message.tool_calls`` arguments as objects,
``images``, ``keep_alive``; eval counts and durations in the final object), ``POST /api/embed``,
``POST /api/embeddings``, ``POST /api/pull`` (installs from the model galleries, streaming
progress objects) and ``DELETE /api/delete``. ``name:latest`` resolves to ``name``. Errors are
``{"error": "message"}``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import time
from datetime import datetime, timezone
from typing import Any

import grpc
import orjson
from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from .. import hookimpl
from ..api import openai as openai_api
from ..api.common import json_body, state
from ..errors import APIError, BadRequest, NotFound
from .core import ERROR, TEXT, TOOL, arguments_object, document, resolve_model, start_chat
from .ollama_port import add_run_option, listener

bp = Blueprint("dialect_ollama", __name__)
OLLAMA_VERSION = "0.12.6"  # the Ollama API level these routes follow (clients compare versions)
NDJSON = "application/x-ndjson"
OPTION_KEYS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "seed": "seed", "stop": "stop",
               "min_p": "min_p", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
               "frequency_penalty": "frequency_penalty"}
expiry: dict[str, float] = {}  # model -> when keep_alive lets it go


@bp.errorhandler(APIError)
async def api_error(error: APIError):
    return Response(orjson.dumps({"error": error.message}), status=error.status, content_type="application/json",
                    headers=error.headers)


@bp.errorhandler(HTTPException)
async def http_error(error: HTTPException):
    return Response(orjson.dumps({"error": error.description or error.name}), status=error.code or 500,
                    content_type="application/json")


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
    usecases = openai_api.model_usecases(config)
    out = ["completion"] if usecases & {"chat", "completion"} or not usecases else []
    if "embeddings" in usecases:
        out.append("embedding")
    try:
        from ..api.capabilities import model_capabilities
        features = set(model_capabilities(config))
    except ImportError:  # pragma: no cover - older kernels
        features = set()
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
    lines = [f"{key} {value}" for key, value in (("temperature", params.temperature), ("top_p", params.top_p),
                                                  ("top_k", params.top_k), ("num_ctx", config.context_size))
             if value is not None] + [f'stop "{stop}"' for stop in config.stopwords]
    info = {"general.architecture": facts["details"]["family"], "general.basename": config.name}
    if config.context_size:
        info["context_length"] = config.context_size
    return Response(orjson.dumps({
        "modelfile": f"FROM {config.parameters.model}\n", "parameters": "\n".join(lines),
        "template": config.template.chat or "", "details": facts["details"], "model_info": info,
        "capabilities": capabilities(config), "modified_at": facts["modified_at"],
    }), content_type="application/json")


def find_config(name: str):
    registry = state().registry
    config = registry.get(name)
    if config is None and ":" in name:
        base, _, tag = name.rpartition(":")
        config = registry.get(base) if tag == "latest" or registry.get(base) else None
    if config is None:
        raise NotFound(f"model '{name}' not found")
    return config


@bp.route("/api/ps", methods=["GET"])
async def ps():
    """The loaded models."""
    settings = state().settings
    models = []
    for model in list(state().manager.loaded.values()):
        facts = model_facts(model.config)
        until = expiry.get(model.name) or (time.time() + settings.idle_timeout if settings.idle_timeout > 0
                                           else time.time() + 10 * 365 * 86400)
        models.append({"name": tagged(model.name), "model": tagged(model.name), "size": facts["size"],
                       "digest": facts["digest"], "details": facts["details"], "size_vram": 0,
                       "context_length": model.config.context_size or 0,
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
    """Unload ``name`` once it has been idle ``seconds`` (0: now), as the idle watchdog would."""
    if seconds is None:
        return
    expiry[name] = time.time() + seconds

    async def check() -> None:
        await asyncio.sleep(seconds)
        model = manager.loaded.get(name)
        if model is not None and model.in_flight == 0 and time.time() >= expiry.get(name, math.inf) - 0.01:
            expiry.pop(name, None)
            await manager.unload(name)

    asyncio.get_running_loop().create_task(check())


# -- chat and generate -------------------------------------------------------------------------


def image_part(data: Any) -> dict[str, Any]:
    raw = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False) if isinstance(data, str) else b""
    kind = "png" if raw.startswith(b"\x89PNG") else "webp" if raw[8:12] == b"WEBP" else "jpeg"
    return {"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{data}"}}


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    out: list[dict[str, Any]] = []
    call_ids: dict[str, list[str]] = {}
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"messages[{i}]: role must be system, user, assistant or tool")
        content = m.get("content") or ""
        if m.get("images"):
            message: dict[str, Any] = {"role": m["role"], "content": [{"type": "text", "text": content}] +
                                       [image_part(img) for img in m["images"]]}
        else:
            message = {"role": m["role"], "content": content}
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = []
            for j, call in enumerate(m["tool_calls"]):
                fn = call.get("function") or {}
                call_id = f"call_{i}_{j}"
                call_ids.setdefault(fn.get("name", ""), []).append(call_id)
                args = fn.get("arguments") or {}
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": fn.get("name", ""), "arguments": args if isinstance(args, str) else json.dumps(args)}})
            message["tool_calls"] = calls
        if m["role"] == "tool":
            name = m.get("tool_name") or m.get("name") or ""
            pending = call_ids.get(name) or next((ids for ids in call_ids.values() if ids), [])
            message["tool_call_id"] = pending.pop(0) if pending else f"call_{name or 'tool'}"
            if name:
                message["name"] = name
        out.append(message)
    return out


def chat_body(body: dict[str, Any], messages: list[dict[str, Any]], config) -> dict[str, Any]:
    out: dict[str, Any] = {"model": config.name, "messages": messages}
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    for key, target in OPTION_KEYS.items():
        if options.get(key) is not None:
            out[target] = options[key]
    if isinstance(options.get("num_predict"), int) and options["num_predict"] > 0:
        out["max_tokens"] = options["num_predict"]
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    elif fmt not in (None, ""):
        raise BadRequest("format must be \"json\" or a JSON schema")
    if body.get("tools"):
        out["tools"] = body["tools"]
    return out


def stats(turn) -> dict[str, Any]:
    ns = 1_000_000_000
    end = turn.finished or time.perf_counter()
    first = turn.first_token or end
    return {"done_reason": "length" if turn.finish_reason == "length" else "stop", "done": True,
            "total_duration": int((end - turn.started) * ns), "load_duration": int((turn.loaded - turn.started) * ns),
            "prompt_eval_count": turn.prompt_tokens, "prompt_eval_duration": int((first - turn.loaded) * ns),
            "eval_count": turn.completion_tokens, "eval_duration": int((end - first) * ns)}


async def run(body: dict[str, Any], messages: list[dict[str, Any]], config, *, chat: bool):
    """Serve one chat or generate request (``chat`` picks the reply shape)."""
    manager = state().manager
    keep = keep_alive_seconds(body.get("keep_alive"))
    name = model_arg(body)
    if not messages or (not chat and not body.get("prompt")):
        if keep == 0:  # an empty request with keep_alive 0: unload
            await manager.unload(config.name)
            reason = "unload"
        else:  # an empty request: load the model
            async with manager.use(config.name):
                pass
            apply_keep_alive(manager, config.name, keep)
            reason = "load"
        empty = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        return Response(orjson.dumps({"model": name, "created_at": now_iso(), **empty, "done": True,
                                      "done_reason": reason}), content_type="application/json")
    turn = await start_chat(chat_body(body, messages, config), config)
    created = now_iso()

    def message(text: str, calls: list[dict[str, str]] | None = None) -> dict[str, Any]:
        if not chat:
            return {"response": text}
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            out["tool_calls"] = [{"function": {"index": i, "name": c["name"],
                                               "arguments": arguments_object(c["arguments"])}}
                                 for i, c in enumerate(calls)]
        return {"message": out}

    if body.get("stream") is False:
        result = await turn.collect()
        apply_keep_alive(manager, config.name, keep)
        return Response(orjson.dumps({"model": name, "created_at": created,
                                      **message(result.text, result.tool_calls), **stats(turn)}),
                        content_type="application/json")

    head, tail = orjson.dumps({"model": name, "created_at": created, **message("\x00"), "done": False}) \
        .split(b'"\\u0000"', 1)
    tail += b"\n"

    async def lines():
        calls: dict[int, dict[str, str]] = {}
        async for event in turn:
            if event[0] == TEXT:
                yield head + orjson.dumps(event[1]) + tail
            elif event[0] == TOOL:
                call = calls.setdefault(event[1], {"name": "", "arguments": ""})
                call["name"] = call["name"] or event[3]
                call["arguments"] += event[4]
            elif event[0] == ERROR:
                yield orjson.dumps({"error": event[1].message}) + b"\n"
                return
        if calls:
            yield orjson.dumps({"model": name, "created_at": now_iso(),
                                **message("", [calls[i] for i in sorted(calls)]), "done": False}) + b"\n"
        yield orjson.dumps({"model": name, "created_at": now_iso(), **message(""), **stats(turn)}) + b"\n"
        apply_keep_alive(manager, config.name, keep)

    response = Response(lines(), content_type=NDJSON, headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response


@bp.route("/api/chat", methods=["POST"])
async def chat():
    """Chat (``messages``), streamed as NDJSON unless ``stream`` is false."""
    body = request_object(await json_body())
    config = resolve_model(model_arg(body), "chat", strip_tag=True)
    return await run(body, chat_messages(body.get("messages") or []), config, chat=True)


@bp.route("/api/generate", methods=["POST"])
async def generate():
    """Generate from a ``prompt`` (with the model's chat template), streamed as NDJSON unless ``stream`` is false."""
    body = request_object(await json_body())
    config = resolve_model(model_arg(body), "chat", strip_tag=True)
    if body.get("raw") or body.get("suffix"):
        raise BadRequest("raw prompts and suffix (fill-in-the-middle) are not supported; use /v1/completions")
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    prompt = body.get("prompt") or ""
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if body.get("images"):
        user["content"] = [{"type": "text", "text": prompt}] + [image_part(i) for i in body["images"]]
    messages.append(user)
    return await run(body, messages, config, chat=False)


# -- embeddings --------------------------------------------------------------------------------


async def embed_all(config, inputs: list[str]) -> tuple[list[list[float]], int]:
    async with state().manager.use(config.name) as model:
        try:
            results = await asyncio.gather(*(model.stub.Embedding(openai_api.embedding_options(text))
                                             for text in inputs))
        except grpc.aio.AioRpcError as exc:
            raise await model.rpc_error(exc, "Embedding") from None
    return [openai_api.vector_of(r) for r in results], sum(r.prompt_tokens or r.tokens for r in results)


@bp.route("/api/embed", methods=["POST"])
async def embed():
    """Embeddings of ``input`` (a string or a list), L2-normalised."""
    body = request_object(await json_body())
    started = time.perf_counter()
    config = resolve_model(model_arg(body), "embeddings", strip_tag=True)
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("input must be a string or a list of strings")
    vectors, tokens = await embed_all(config, inputs)
    dims = body.get("dimensions")
    if isinstance(dims, int) and dims > 0:
        vectors = [v[:dims] for v in vectors]
    vectors = [[x / (math.sqrt(sum(y * y for y in v)) or 1.0) for x in v] for v in vectors]
    took = int((time.perf_counter() - started) * 1e9)
    apply_keep_alive(state().manager, config.name, keep_alive_seconds(body.get("keep_alive")))
    return Response(orjson.dumps({"model": model_arg(body), "embeddings": vectors, "total_duration": took,
                                  "load_duration": 0, "prompt_eval_count": tokens}), content_type="application/json")


@bp.route("/api/embeddings", methods=["POST"])
async def embeddings():
    """The older single-prompt embeddings route: ``{"embedding": [...]}``."""
    body = request_object(await json_body())
    config = resolve_model(model_arg(body), "embeddings", strip_tag=True)
    vectors, _ = await embed_all(config, [str(body.get("prompt") or "")])
    return Response(orjson.dumps({"embedding": vectors[0]}), content_type="application/json")


# -- pull and delete ---------------------------------------------------------------------------


@bp.route("/api/pull", methods=["POST"])
async def pull():
    """Install a model from the model galleries; progress objects stream as NDJSON."""
    body = request_object(await json_body())
    name = model_arg(body)
    gallery, jobs = state().models, state().gallery.jobs
    target = name[:-len(":latest")] if name.endswith(":latest") else name
    gallery.check_request(target, None, {}, list(state().settings.allow_local_urls))
    entry = await asyncio.to_thread(gallery.resolve, target, None)

    def work(job, progress) -> str:
        return f"model {gallery.install(target, progress=progress, cancel=job.cancel_event)} installed"

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
    """Remove an installed model (its config and files no other model uses)."""
    body = request_object(await json_body())
    config = find_config(model_arg(body))
    gallery = state().models
    if config.name not in await asyncio.to_thread(gallery.installed_names):
        raise NotFound(f"model '{model_arg(body)}' is not installed in the models directory")
    await state().manager.unload(config.name)
    await asyncio.to_thread(gallery.delete, config.name)
    return Response(b"", status=200, content_type="text/plain")


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
OBJECT = {"type": "object"}
STREAM = {"application/json": OBJECT, NDJSON: {"type": "string"}}


@hookimpl
def localai_register_routes(app):
    app.register_blueprint(bp)
    documented = {name: {200: {"application/json": OBJECT}}
                  for name in ("tags", "show", "ps", "version", "embed", "embeddings")}
    documented.update({"chat": {200: STREAM}, "generate": {200: STREAM}, "pull": {200: STREAM},
                       "delete": {200: {"text/plain": {"type": "string"}}}})
    document({f"dialect_ollama.{name}": statuses for name, statuses in documented.items()}, ERROR_SCHEMA)


@hookimpl
def localai_register_commands(cli):
    add_run_option(cli)


@hookimpl
def localai_startup(app):
    listener.start(app)


@hookimpl
def localai_shutdown(app):
    return listener.close()
