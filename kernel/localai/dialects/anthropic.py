"""Anthropic's Messages API on the kernel's chat core: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (also without ``/v1``), for the ``anthropic`` SDK and the
tools built on it (``ANTHROPIC_BASE_URL=http://127.0.0.1:8080``).

In: ``system`` (string or text blocks), ``messages`` with ``text``, ``image``, ``tool_use`` and
``tool_result`` blocks, ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``, ``top_k``,
``tools`` (``input_schema``), ``tool_choice`` (``auto``, ``any``, ``tool``, ``none``,
``disable_parallel_tool_use``), ``output_format`` / ``output_config.format`` (``json_schema``),
``stream``. Out: a ``message`` with ``text`` and ``tool_use`` blocks, ``stop_reason``
(``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``) and ``usage``; streamed as
Anthropic's events. Errors are ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from .. import hookimpl
from ..api.common import json_body, state, versioned
from ..chat.calls import tokenize
from ..chat.models import model_for
from ..chat.start import start_chat
from ..chat.turn import ERROR, TEXT, TOOL
from ..errors import APIError, BadRequest
from ..request_limits import check_count, check_stops
from .core import arguments_object, document, new_id

bp = Blueprint("dialect_anthropic", __name__)
route = versioned(bp)

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


@bp.errorhandler(APIError)
async def api_error(error: APIError):
    return Response(orjson.dumps(error_body(error.status, error.message)), status=error.status,
                    content_type="application/json", headers=error.headers)


@bp.errorhandler(HTTPException)
async def http_error(error: HTTPException):
    status = error.code or 500
    return Response(orjson.dumps(error_body(status, error.description or error.name)), status=status,
                    content_type="application/json")


# -- request → OpenAI chat body ------------------------------------------------------------


def text_of(content: Any, where: str) -> str:
    """A string, or the text of a list of text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise BadRequest(f"{where}: expected a string or a list of content blocks", param=where)
    texts = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise BadRequest(f"{where}: blocks of type {kind!r} are not supported here", param=where)
        texts.append(str(block.get("text", "")))
    return "\n".join(texts)


def image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        raise BadRequest(f"image source of type {source.get('type')!r} is not supported", param="messages")
    return {"type": "image_url", "image_url": {"url": url}}


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required", param="messages")
    check_count(messages, "max_messages", "messages", "messages")  # before converting them
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: must be 'user' or 'assistant'", param=where)
        role, content = message["role"], message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content: expected a string or a list of content blocks", param=where)
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image" and role == "user":
                parts.append(image_part(block))
            elif kind == "tool_use" and role == "assistant":
                calls.append({"id": block.get("id") or new_id("toolu_"), "type": "function",
                              "function": {"name": block.get("name", ""),
                                           "arguments": json.dumps(block.get("input") or {})}})
            elif kind == "tool_result" and role == "user":
                result = text_of(block.get("content"), f"{where}.content.tool_result")
                if block.get("is_error"):
                    result = f"Error: {result}"
                out.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": result})
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                continue
            else:
                raise BadRequest(f"{where}.content: blocks of type {kind!r} are not supported "
                                 f"in {role} messages", param=where)
        if role == "assistant":
            text = "".join(p["text"] for p in parts)
            if calls:
                out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
            elif text or not out or out[-1]["role"] != "assistant":
                out.append({"role": "assistant", "content": text})
        elif parts:
            only_text = all(p["type"] == "text" for p in parts)
            out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    return out


def chat_body(body: Any) -> dict[str, Any]:
    """The OpenAI chat body for an Anthropic Messages request."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not body.get("model"):
        raise BadRequest("model: Field required", param="model")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise BadRequest("max_tokens: Field required (a positive integer)", param="max_tokens")
    messages = chat_messages(body.get("messages"))
    system = text_of(body.get("system"), "system")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    out: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": body["max_tokens"]}
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadRequest("tools: expected a list", param="tools")
        out["tools"] = []
        for tool in tools:
            if not isinstance(tool, dict) or "name" not in tool:
                raise BadRequest("tools: each tool needs a name and an input_schema", param="tools")
            if tool.get("type") not in (None, "custom"):
                raise BadRequest(f"tools: server tools of type {tool['type']!r} are not supported", param="tools")
            function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
            if tool.get("description"):
                function["description"] = tool["description"]
            out["tools"].append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "auto":
            out["tool_choice"] = "auto"
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
        else:
            raise BadRequest(f"tool_choice: unknown type {kind!r}", param="tool_choice")
        if choice.get("disable_parallel_tool_use") is not None and kind != "none":
            out["parallel_tool_calls"] = not choice["disable_parallel_tool_use"]
    fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "output", "schema": fmt.get("schema") or {}}}
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise BadRequest("stop_sequences: expected a list of strings", param="stop_sequences")
    check_stops(stops, "stop_sequences")  # the same limits as OpenAI's "stop" (request_limits)
    return out


# -- routes ----------------------------------------------------------------------------------


def usage(turn) -> dict[str, int]:
    # Anthropic counts cache reads apart: input_tokens + cache_read_input_tokens is the whole prompt
    cached = min(turn.prompt_tokens_cached, turn.prompt_tokens)
    return {"input_tokens": turn.prompt_tokens - cached, "output_tokens": turn.completion_tokens,
            "cache_read_input_tokens": cached}


@route("/messages", methods=["POST"])
async def messages():
    body = await json_body()
    chat = chat_body(body)
    stops = [s for s in body.get("stop_sequences") or [] if s]
    turn = await start_chat(state(), chat, stops=stops)
    model_name = body["model"]
    if body.get("stream"):
        return stream(turn, model_name)
    result = await turn.collect()
    content: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        content.append({"type": "tool_use", "id": call["id"] or new_id("toolu_"), "name": call["name"],
                        "input": arguments_object(call["arguments"])})
    message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model_name,
               "content": content, "stop_reason": STOP_REASONS.get(turn.finish_reason, "end_turn"),
               "stop_sequence": turn.stop_sequence, "usage": usage(turn)}
    return Response(orjson.dumps(message), content_type="application/json")


def sse(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


TEXT_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
TEXT_MID = b',"delta":{"type":"text_delta","text":'
JSON_MID = b',"delta":{"type":"input_json_delta","partial_json":'
TAIL = b"}}\n\n"


def stream(turn, model_name: str) -> Response:
    async def events():
        start = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model_name,
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": turn.prompt_tokens, "output_tokens": 0}}
        yield sse("message_start", {"type": "message_start", "message": start})
        yield sse("ping", {"type": "ping"})
        index = -1
        open_kind: Any = None  # "text", or the tool call's index
        head = b""
        async for event in turn:
            kind = event[0]
            if kind == TEXT:
                if open_kind != "text":
                    if open_kind is not None:
                        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
                    index, open_kind = index + 1, "text"
                    head = TEXT_HEAD + str(index).encode() + TEXT_MID
                    yield sse("content_block_start", {"type": "content_block_start", "index": index,
                                                      "content_block": {"type": "text", "text": ""}})
                yield head + orjson.dumps(event[1]) + TAIL
            elif kind == TOOL:
                _, call_index, call_id, name, args = event
                if open_kind != ("tool", call_index):
                    if open_kind is not None:
                        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
                    index, open_kind = index + 1, ("tool", call_index)
                    head = TEXT_HEAD + str(index).encode() + JSON_MID
                    block = {"type": "tool_use", "id": call_id or new_id("toolu_"), "name": name, "input": {}}
                    yield sse("content_block_start", {"type": "content_block_start", "index": index,
                                                      "content_block": block})
                if args:
                    yield head + orjson.dumps(args) + TAIL
            elif kind == ERROR:
                yield sse("error", error_body(event[1].status, event[1].message))
                return
        if open_kind is None:  # an empty reply still has one (empty) text block
            index = 0
            yield sse("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": STOP_REASONS.get(turn.finish_reason, "end_turn"),
                                              "stop_sequence": turn.stop_sequence},
                                    "usage": usage(turn)})
        yield sse("message_stop", {"type": "message_stop"})

    response = Response(events(), content_type="text/event-stream", headers=SSE_HEADERS)
    response.timeout = None
    return response


@route("/messages/count_tokens", methods=["POST"])
async def count_tokens():
    body = await json_body()
    if isinstance(body, dict):
        body.setdefault("max_tokens", 1)
    chat = chat_body(body)
    config = model_for(state(), chat["model"], "chat")
    lines = [f"{m['role']}: {m.get('content') or ''}" if isinstance(m.get("content"), (str, type(None)))
             else f"{m['role']}: " + " ".join(p.get("text", "") for p in m["content"]) for m in chat["messages"]]
    for m in chat["messages"]:
        if m.get("tool_calls"):
            lines.append(json.dumps(m["tool_calls"]))
    if chat.get("tools"):
        lines.append(json.dumps(chat["tools"]))
    counted = await tokenize(state().manager, config.name, "\n".join(lines))
    return Response(orjson.dumps({"input_tokens": counted.length or len(counted.tokens)}),
                    content_type="application/json")


ERROR_SCHEMA = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}
OBJECT = {"type": "object"}
EVENT = {"type": "object", "required": ["event", "data"]}


@hookimpl
def localai_register_routes(app):
    app.register_blueprint(bp)
    document({"dialect_anthropic.messages": {200: {"application/json": OBJECT, "text/event-stream": EVENT}},
              "dialect_anthropic.count_tokens": {200: {"application/json": OBJECT}}}, ERROR_SCHEMA)
