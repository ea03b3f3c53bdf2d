"""Ollama's API on the kernel's chat core, for the ``ollama`` clients, Open WebUI and editor
plugins (``OLLAMA_HOST=http://127.0.0.1:8080``).

``POST /api/chat`` and ``POST /api/generate`` (NDJSON streaming unless ``"stream": false``; ``options``, ``format``
``"json"`` or a JSON schema, ``tools`` with ``message.tool_calls`` arguments as objects,
``images``, ``keep_alive``; eval counts and durations in the final object), ``POST /api/embed``,
and ``POST /api/embeddings`` are here; the model routes (``/api/tags``, ``show``, ``ps``,
``version``, ``pull``, ``delete``) are in :mod:`.ollama_models`, what the second
listener (``--ollama-address``, bound by the server) answers in :mod:`.ollama_port`.
``name:latest`` resolves to ``name``. Chat and generate requests are parsed with
:mod:`.ollama_wire`. Errors are ``{"error": "message"}``.
"""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

import orjson
from quart import Blueprint, Response

from .. import hookimpl
from ..api.common import json_body, state
from ..chat import calls as backend_calls
from ..chat.models import model_for
from ..chat.start import start_chat
from ..chat.turn import ERROR, TEXT, TOOL
from ..errors import BadRequest
from . import ollama_models
from . import ollama_wire as wire
from .core import arguments_object, document
from .wire import parse_wire
from .ollama_models import (NDJSON, apply_keep_alive, install_errors, keep_alive_seconds, model_arg, now_iso,
                            request_object)

bp = Blueprint("dialect_ollama", __name__)
install_errors(bp)

# -- chat and generate -------------------------------------------------------------------------


def image_part(data: str) -> dict[str, Any]:
    raw = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
    kind = "png" if raw.startswith(b"\x89PNG") else "webp" if raw[8:12] == b"WEBP" else "jpeg"
    return {"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{data}"}}


def chat_messages(messages: list[wire.Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    call_ids: dict[str, list[str]] = {}
    for i, m in enumerate(messages):
        content = m.content or ""
        if m.images:
            message: dict[str, Any] = {"role": m.role, "content": [{"type": "text", "text": content}] +
                                       [image_part(img) for img in m.images]}
        else:
            message = {"role": m.role, "content": content}
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for j, call in enumerate(m.tool_calls):
                fn = call.function
                call_id = f"call_{i}_{j}"
                call_ids.setdefault(fn.name, []).append(call_id)
                args = fn.arguments or {}
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": fn.name, "arguments": args if isinstance(args, str) else json.dumps(args)}})
            message["tool_calls"] = calls
        if m.role == "tool":
            name = m.tool_name or m.name or ""
            pending = call_ids.get(name) or next((ids for ids in call_ids.values() if ids), [])
            message["tool_call_id"] = pending.pop(0) if pending else f"call_{name or 'tool'}"
            if name:
                message["name"] = name
        out.append(message)
    return out


def generate_messages(req: wire.GenerateRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    prompt = req.prompt or ""
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if req.images:
        user["content"] = [{"type": "text", "text": prompt}] + [image_part(i) for i in req.images]
    messages.append(user)
    return messages


def chat_body(req: wire.Generation, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The OpenAI chat body for a parsed chat or generate request and its messages."""
    out: dict[str, Any] = {"model": req.model_name, "messages": messages, **req.sampling()}
    fmt = req.response_format()
    if fmt is not None:
        out["response_format"] = fmt
    if isinstance(req, wire.ChatRequest) and req.tools:
        out["tools"] = req.tools
    return out


def stats(turn) -> dict[str, Any]:
    ns = 1_000_000_000
    end = turn.finished or time.perf_counter()
    first = turn.first_token or end
    return {"done_reason": "length" if turn.finish_reason == "length" else "stop", "done": True,
            "total_duration": int((end - turn.started) * ns), "load_duration": int((turn.loaded - turn.started) * ns),
            "prompt_eval_count": turn.prompt_tokens, "prompt_eval_duration": int((first - turn.loaded) * ns),
            "eval_count": turn.completion_tokens, "eval_duration": int((end - first) * ns)}


async def run(req: wire.Generation, messages: list[dict[str, Any]], *, chat: bool):
    """Serve one chat or generate request (``chat`` picks the reply shape)."""
    app_state = state()
    manager = app_state.manager
    keep = keep_alive_seconds(req.keep_alive)
    name = req.model_name
    if not messages or (not chat and not getattr(req, "prompt", None)):
        config = model_for(app_state, name, "chat", strip_tag=True)
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
    turn = await start_chat(app_state, chat_body(req, messages), strip_tag=True)  # hooks, then the model
    config = turn.config
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

    if req.stream is False:
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
    req = parse_wire(wire.ChatRequest, await json_body())
    return await run(req, chat_messages(req.messages or []), chat=True)


@bp.route("/api/generate", methods=["POST"])
async def generate():
    """Generate from a ``prompt`` (with the model's chat template), streamed as NDJSON unless ``stream`` is false."""
    req = parse_wire(wire.GenerateRequest, await json_body())
    if req.raw or req.suffix:
        raise BadRequest("raw prompts and suffix (fill-in-the-middle) are not supported; use /v1/completions")
    return await run(req, generate_messages(req), chat=False)


# -- embeddings --------------------------------------------------------------------------------


async def embed_all(config, inputs: list[str]) -> tuple[list[list[float]], int]:
    results = await backend_calls.embed(state().manager, config.name, inputs)
    return [backend_calls.vector_of(r) for r in results], sum(r.prompt_tokens or r.tokens for r in results)


@bp.route("/api/embed", methods=["POST"])
async def embed():
    """Embeddings of ``input`` (a string or a list), L2-normalised."""
    body = request_object(await json_body())
    started = time.perf_counter()
    config = model_for(state(), model_arg(body), "embeddings", strip_tag=True)
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
    config = model_for(state(), model_arg(body), "embeddings", strip_tag=True)
    vectors, _ = await embed_all(config, [str(body.get("prompt") or "")])
    return Response(orjson.dumps({"embedding": vectors[0]}), content_type="application/json")


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
OBJECT = {"type": "object"}
STREAM = {"application/json": OBJECT, NDJSON: {"type": "string"}}


@hookimpl
def localai_register_routes(app):
    app.register_blueprint(bp)
    app.register_blueprint(ollama_models.bp)
    documented = {f"dialect_ollama_models.{name}": {200: {"application/json": OBJECT}}
                  for name in ("tags", "show", "ps", "version")}
    documented.update({"dialect_ollama.embed": {200: {"application/json": OBJECT}},
                       "dialect_ollama.embeddings": {200: {"application/json": OBJECT}},
                       "dialect_ollama.chat": {200: STREAM}, "dialect_ollama.generate": {200: STREAM},
                       "dialect_ollama_models.pull": {200: STREAM},
                       "dialect_ollama_models.delete": {200: {"text/plain": {"type": "string"}}}})
    document(documented, ERROR_SCHEMA)
