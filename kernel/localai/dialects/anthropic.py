"""Anthropic's Messages API on the kernel's chat core: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (also without ``/v1``), for the ``anthropic`` SDK and the
tools built on it (``ANTHROPIC_BASE_URL=http://127.0.0.1:8080``).

In: ``system`` (string or text blocks), ``messages`` with ``text``, ``image``, ``tool_use`` and
``tool_result`` blocks (``role: "system"`` messages among them are appended to ``system``, in
order), ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``, ``top_k``,
``tools`` (``input_schema``), ``tool_choice`` (``auto``, ``any``, ``tool``, ``none``,
``disable_parallel_tool_use``), ``output_format`` / ``output_config.format`` (``json_schema``),
``stream``; ``thinking``, ``context_management``, ``output_config.effort``, ``?beta=true`` and
``anthropic-beta`` headers are accepted and change nothing. Out: a ``message`` with ``text`` and
``tool_use`` blocks, ``stop_reason``
(``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``) and ``usage``; streamed as
Anthropic's events. The request is parsed with :mod:`.anthropic_wire`. Errors are
``{"type": "error", "error": {"type", "message"}}``.
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
from ..errors import APIError, BadRequest, ContextLengthExceeded
from . import anthropic_wire as wire
from .core import arguments_object, document, new_id
from .wire import parse_wire

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
    message = error.message
    if isinstance(error, ContextLengthExceeded):  # the exact words Claude Code matches before it compacts
        message = f"prompt is too long: {error.prompt_tokens} tokens > {error.limit} maximum"
    return Response(orjson.dumps(error_body(error.status, message)), status=error.status,
                    content_type="application/json", headers=error.headers)


@bp.errorhandler(HTTPException)
async def http_error(error: HTTPException):
    status = error.code or 500
    return Response(orjson.dumps(error_body(status, error.description or error.name)), status=status,
                    content_type="application/json")


# -- request → OpenAI chat body ------------------------------------------------------------


def text_of(content: str | list[Any] | None, where: str) -> str:
    """A string, or the text of a list of text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for block in content:
        if not isinstance(block, wire.TextBlock):
            raise BadRequest(f"{where}: blocks of type {block.type!r} are not supported here", param=where)
        texts.append(block.text)
    return "\n".join(texts)


def image_part(block: wire.ImageBlock, where: str) -> dict[str, Any]:
    source = block.source
    if source.type == "base64":
        url = f"data:{source.media_type};base64,{source.data}"
    elif source.type == "url":
        url = source.url
    else:
        raise BadRequest(f"{where}: image source of type {source.type!r} is not supported", param=where)
    return {"type": "image_url", "image_url": {"url": url}}


def system_prompt(req: wire.MessagesRequest) -> str:
    """``system``, then the text of each ``role: "system"`` message in ``messages``, in order; one
    with ``clear_at: next_user_message`` only until a later user message exists."""
    texts = [text_of(req.system, "system")]
    last_user = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=-1)
    for i, message in enumerate(req.messages):
        if message.role == "system" and not (message.clear_at == "next_user_message" and i < last_user):
            texts.append(text_of(message.content, f"messages.{i}.content"))
    return "\n\n".join(text for text in texts if text)


def chat_messages(messages: list[wire.Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role, content = message.role, message.content
        if role == "system":
            continue  # in the system prompt (system_prompt)
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for block in content:
            if isinstance(block, wire.TextBlock):
                parts.append({"type": "text", "text": block.text})
            elif isinstance(block, wire.ImageBlock) and role == "user":
                parts.append(image_part(block, f"{where}.content"))
            elif isinstance(block, wire.ToolUseBlock) and role == "assistant":
                calls.append({"id": block.id or new_id("toolu_"), "type": "function",
                              "function": {"name": block.name, "arguments": json.dumps(block.input or {})}})
            elif isinstance(block, wire.ToolResultBlock) and role == "user":
                result = text_of(block.content, f"{where}.content.tool_result")
                if block.is_error:
                    result = f"Error: {result}"
                out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
            elif isinstance(block, wire.ThinkingBlock) and role == "assistant":
                continue
            else:
                raise BadRequest(f"{where}.content: blocks of type {block.type!r} are not supported "
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


TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def chat_body(req: wire.MessagesRequest) -> dict[str, Any]:
    """The OpenAI chat body for a parsed Anthropic Messages request."""
    messages = chat_messages(req.messages)
    system = system_prompt(req)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    out: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.max_tokens is not None:
        out["max_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "top_k"):
        if getattr(req, key) is not None:
            out[key] = getattr(req, key)
    if req.tools:
        out["tools"] = []
        for i, tool in enumerate(req.tools):
            if tool.type not in (None, "custom"):
                raise BadRequest(f"tools.{i}: server tools of type {tool.type!r} are not supported",
                                 param=f"tools.{i}.type")
            function = {"name": tool.name, "parameters": tool.input_schema or {"type": "object"}}
            if tool.description:
                function["description"] = tool.description
            out["tools"].append({"type": "function", "function": function})
    choice = req.tool_choice
    if choice is not None:
        if choice.type == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            out["tool_choice"] = TOOL_CHOICES[choice.type]
        if choice.disable_parallel_tool_use is not None and choice.type != "none":
            out["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    schema = req.output_schema()
    if schema is not None:
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return out


# -- routes ----------------------------------------------------------------------------------


def usage(turn) -> dict[str, int]:
    # Anthropic counts cache reads apart: input_tokens + cache_read_input_tokens is the whole prompt
    cached = min(turn.prompt_tokens_cached, turn.prompt_tokens)
    return {"input_tokens": turn.prompt_tokens - cached, "output_tokens": turn.completion_tokens,
            "cache_read_input_tokens": cached}


@route("/messages", methods=["POST"])
async def messages():
    req = parse_wire(wire.MessagesRequest, await json_body())
    stops = [s for s in req.stop_sequences or [] if s]
    turn = await start_chat(state(), chat_body(req), stops=stops)
    model_name = req.model
    if req.stream:
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
    chat = chat_body(parse_wire(wire.CountTokensRequest, await json_body()))
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
