"""OpenAI's Responses API on the kernel's chat core: ``POST /v1/responses``,
``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` (also without
``/v1``), for the openai SDK's ``client.responses``, openai-agents and coding agents.

In: ``input`` (a string, or items: messages with ``input_text`` / ``output_text`` /
``input_image`` parts, ``function_call``, ``function_call_output``), ``instructions``,
``max_output_tokens``, ``temperature``, ``top_p``, ``tools`` (function and namespace; the others
are not offered, see :mod:`.responses_tools`), ``tool_choice``, ``parallel_tool_calls``,
``text.format`` (``json_schema``, ``json_object``), ``stream``, ``store``,
``previous_response_id``, ``metadata``. ``developer`` messages are system messages (leading ones
join ``instructions``); ``reasoning``, ``include``, ``prompt_cache_key`` and ``client_metadata``
are accepted and ignored. Streaming sends the typed events in order, each
with a ``sequence_number``. The request is parsed with :mod:`.responses_wire`. Stored responses
live in :mod:`.response_store` (SQLite, bounded); with API keys, each is visible to, continuable
and deletable by the key that created it only (others get the same 404 as for a missing id).
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from quart import Blueprint, Response, current_app

from .. import hookimpl
from ..api.common import json_body, state, versioned
from ..auth import caller
from ..chat.start import start_chat
from ..chat.turn import ERROR, TEXT, TOOL
from ..errors import BadRequest, NotFound
from . import responses_wire as wire
from .responses_tools import ToolPlan, chat_tool_choice, joined, plan_tools
from .core import new_id
from .response_store import ResponseStore
from .wire import parse_wire

bp = Blueprint("dialect_responses", __name__)
route = versioned(bp)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STORE = "localai.responses"  # the app's ResponseStore, in app.extensions


def store() -> ResponseStore:
    """The app's response store, opened on first use."""
    if STORE not in current_app.extensions:
        current_app.extensions[STORE] = ResponseStore.for_settings(state().settings)
    return current_app.extensions[STORE]


# -- request → OpenAI chat body ----------------------------------------------------------------


def content_of(content: str | list[Any], where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, wire.TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, wire.ImagePart) and part.image_url:
            parts.append({"type": "image_url", "image_url": {"url": part.image_url}})
        elif isinstance(part, wire.RefusalPart):
            parts.append({"type": "text", "text": part.refusal})
        else:
            raise BadRequest(f"{where}: content parts of type {part.type!r} are not supported", param=where)
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def input_messages(value: str | list[Any] | None) -> list[dict[str, Any]]:
    """Chat messages for the request's ``input``."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value or ()):
        where = f"input.{i}"
        if isinstance(item, wire.MessageItem):
            role = "system" if item.role == "developer" else item.role
            out.append({"role": role, "content": content_of(item.content, f"{where}.content")})
        elif isinstance(item, wire.FunctionCallItem):
            name = joined(item.namespace, item.name) if item.namespace else item.name
            call = {"id": item.call_id or item.id or new_id("call_"), "type": "function",
                    "function": {"name": name, "arguments": item.arguments or "{}"}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and (last.get("tool_calls") or not last["content"]):
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, wire.FunctionCallOutputItem):
            text = content_of(item.output, f"{where}.output")
            out.append({"role": "tool", "tool_call_id": item.call_id,
                        "content": text if isinstance(text, str) else json.dumps(text)})
        elif isinstance(item, wire.ReasoningItem):
            continue
        else:
            raise BadRequest(f"{where}: items of type {item.type!r} are not supported", param=where)
    return out


def leading_system(instructions: str | None, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with ``instructions`` and the leading text system messages as one system message
    (chat templates want at most one, first)."""
    lead = [instructions] if instructions else []
    rest = list(messages)
    while rest and rest[0]["role"] == "system" and isinstance(rest[0]["content"], str):
        lead.append(rest.pop(0)["content"])
    return ([{"role": "system", "content": "\n\n".join(lead)}] if lead else []) + rest


def chat_body(req: wire.CreateRequest, history: list[dict[str, Any]], new: list[dict[str, Any]],
              plan: ToolPlan) -> dict[str, Any]:
    """The OpenAI chat body for a parsed Responses request, its history and new messages."""
    messages = leading_system(req.instructions, list(history) + new)
    if not messages:
        raise BadRequest("input: at least one input item is required", param="input")
    out: dict[str, Any] = {"model": req.model, "messages": messages}
    for key, target in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens"),
                        ("parallel_tool_calls", "parallel_tool_calls"), ("top_k", "top_k"), ("seed", "seed")):
        if getattr(req, key) is not None:
            out[target] = getattr(req, key)
    choice = chat_tool_choice(req, plan)  # first: allowed_tools narrows the plan's tools
    if plan.tools:
        out["tools"] = plan.tools
    if choice is not None and (plan.tools or choice == "none"):
        out["tool_choice"] = choice
    fmt = req.format
    if fmt is not None and fmt.type == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.name or "response", "schema": fmt.schema_ or {}, "strict": fmt.strict}}
    elif fmt is not None and fmt.type == "json_object":
        out["response_format"] = {"type": "json_object"}
    return out


# -- the response object -----------------------------------------------------------------------


def echoed(value: Any) -> Any:
    """A part of the request as the client sent it."""
    return value.model_dump(by_alias=True, exclude_unset=True) if value is not None else None


def echoed_tool(tool: wire.Tool) -> dict[str, Any]:
    """A tool as sent, in OpenAI's shape: a function's parameters and strict always there (null when
    not given), a namespace's functions under ``tools``."""
    if tool.type == "function":
        return {"parameters": None, "strict": None, **echoed(tool)}
    out = echoed(tool)
    if tool.type == "namespace":
        out.pop("functions", None)
        out["tools"] = [{"type": "function", "parameters": None, "strict": None, **echoed(inner)}
                        for inner in tool.members]
        out.setdefault("description", "")
    return out


def response_object(rid: str, req: wire.CreateRequest, model: str, created: int, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    choice = req.tool_choice
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "model": model, "output": output,
        "parallel_tool_calls": req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        "previous_response_id": req.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "store": req.store is not False, "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": {"format": echoed(req.format) or {"type": "text"}},
        "tool_choice": "auto" if choice is None else choice if isinstance(choice, str) else echoed(choice),
        # a function tool's parameters and strict always there (null when not given)
        "tools": [echoed_tool(tool) for tool in req.tools or ()],
        "top_p": req.top_p if req.top_p is not None else 1.0, "truncation": "disabled",
        "metadata": req.metadata or {},
        # OpenAI's schema has no null for these: left out until known (usage) or unless given (user)
        **({"usage": usage} if usage is not None else {}),
        **({"user": req.user} if req.user is not None else {}),
    }


def usage_of(turn) -> dict[str, Any]:
    # cache_write_tokens: OpenAI's explicit prompt-cache writes; LocalAI's backends make none
    details = {"cached_tokens": turn.prompt_tokens_cached, "cache_write_tokens": 0}
    return {"input_tokens": turn.prompt_tokens, "input_tokens_details": details,
            "output_tokens": turn.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": turn.prompt_tokens + turn.completion_tokens}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    if status != "completed":
        content = []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call: dict[str, str], plan: ToolPlan, status: str = "completed") -> dict[str, Any]:
    """A ``function_call`` item for the model's call, under the client's name (and namespace)."""
    return {"type": "function_call", "id": item_id, "call_id": call["id"] or new_id("call_"),
            **plan.call(call["name"]), "arguments": call["arguments"], "status": status}


def output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response's output as chat messages (what a continuation sees)."""
    text = "".join(part["text"] for item in output if item["type"] == "message" for part in item["content"])
    calls = [{"id": item["call_id"], "type": "function", "function": {
        "name": joined(item["namespace"], item["name"]) if item.get("namespace") else item["name"],
        "arguments": item["arguments"]}} for item in output if item["type"] == "function_call"]
    if calls:
        return [{"role": "assistant", "content": text or None, "tool_calls": calls}]
    return [{"role": "assistant", "content": text}]


async def keep(saved: ResponseStore, owner: str | None, req: wire.CreateRequest, result: dict[str, Any],
               history: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    if req.store is not False:
        await saved.put(owner, result, history + new + output_messages(result["output"]), new)


# -- routes ------------------------------------------------------------------------------------


@route("/responses", methods=["POST"])
async def create():
    req = parse_wire(wire.CreateRequest, await json_body())
    history: list[dict[str, Any]] = []
    owner = caller()
    if req.previous_response_id:
        found = await store().get(owner, req.previous_response_id)
        if found is None:
            raise NotFound(f"Previous response with id '{req.previous_response_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        history = found["history"]
    new = input_messages(req.input)
    plan = plan_tools(req)
    turn = await start_chat(state(), chat_body(req, history, new, plan))
    rid, created, model = new_id("resp_"), int(time.time()), req.model or turn.name
    if req.stream:
        return stream(turn, req, plan, rid, created, model, history, new, store(), owner)
    result = await turn.collect()
    output = []
    if result.text or not result.tool_calls:
        output.append(message_item(new_id("msg_"), result.text))
    output += [call_item(new_id("fc_"), call, plan) for call in result.tool_calls]
    status = "incomplete" if turn.finish_reason == "length" else "completed"
    response = response_object(rid, req, model, created, status, output, usage_of(turn))
    await keep(store(), owner, req, response, history, new)
    return Response(orjson.dumps(response), content_type="application/json", headers=plan.headers)


def stream(turn, req: wire.CreateRequest, plan: ToolPlan, rid, created, model, history, new, saved: ResponseStore,
           owner: str | None) -> Response:
    async def events():
        seq = 0

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            nonlocal seq
            seq += 1
            return (b"event: " + kind.encode() + b"\ndata: " +
                    orjson.dumps({"type": kind, "sequence_number": seq - 1, **payload}) + b"\n\n")

        start = response_object(rid, req, model, created, "in_progress", [], None)
        yield event("response.created", {"response": start})
        yield event("response.in_progress", {"response": start})
        output: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None  # the open item: a message, or a function call
        text: list[str] = []
        head = tail = b""

        def close():
            index = len(output)
            if current["type"] == "message":
                full = "".join(text)
                part = {"type": "output_text", "text": full, "annotations": [], "logprobs": []}
                yield event("response.output_text.done", {"item_id": current["id"], "output_index": index,
                                                          "content_index": 0, "text": full, "logprobs": []})
                yield event("response.content_part.done", {"item_id": current["id"], "output_index": index,
                                                           "content_index": 0, "part": part})
                item = message_item(current["id"], full)
            else:
                item = {**{k: v for k, v in current.items() if k != "index"}, "status": "completed"}
                yield event("response.function_call_arguments.done", {
                    "item_id": item["id"], "output_index": index, "name": item["name"],
                    "arguments": item["arguments"]})
            output.append(item)
            yield event("response.output_item.done", {"output_index": index, "item": item})

        async for ev in turn:
            if ev[0] == ERROR:
                yield event("error", {"code": ev[1].code, "message": ev[1].message, "param": ev[1].param})
                return
            if ev[0] == TEXT:
                if current is None or current["type"] != "message":
                    if current is not None:
                        for item in close():
                            yield item
                    current, text = message_item(new_id("msg_"), "", "in_progress"), []
                    index = len(output)
                    yield event("response.output_item.added", {"output_index": index, "item": current})
                    yield event("response.content_part.added", {
                        "item_id": current["id"], "output_index": index, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
                    head = (b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
                            b"\"item_id\":\"" + current["id"].encode() + b"\",\"output_index\":" +
                            str(index).encode() + b",\"content_index\":0,\"logprobs\":[],\"sequence_number\":")
                    tail = b',"delta":'
                text.append(ev[1])
                seq += 1
                yield head + str(seq - 1).encode() + tail + orjson.dumps(ev[1]) + b"}\n\n"
            elif ev[0] == TOOL:
                _, call_index, call_id, name, args = ev
                if current is None or current.get("index") != call_index:
                    if current is not None:
                        for item in close():
                            yield item
                    current = call_item(new_id("fc_"), {"id": call_id, "name": name, "arguments": ""}, plan,
                                        "in_progress")
                    yield event("response.output_item.added", {"output_index": len(output), "item": current})
                    current["index"] = call_index
                if args:
                    current["arguments"] += args
                    yield event("response.function_call_arguments.delta", {
                        "item_id": current["id"], "output_index": len(output), "delta": args})
        if current is None:
            current, text = message_item(new_id("msg_"), "", "in_progress"), []
            yield event("response.output_item.added", {"output_index": 0, "item": current})
            yield event("response.content_part.added", {
                "item_id": current["id"], "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        for item in close():
            yield item
        status = "incomplete" if turn.finish_reason == "length" else "completed"
        final = response_object(rid, req, model, created, status, output, usage_of(turn))
        await keep(saved, owner, req, final, history, new)
        yield event(f"response.{status}", {"response": final})

    response = Response(events(), content_type="text/event-stream", headers={**SSE_HEADERS, **plan.headers})
    response.timeout = None
    return response


async def stored(response_id: str) -> dict[str, Any]:
    found = await store().get(caller(), response_id)
    if found is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
    return found


@route("/responses/<response_id>", methods=["GET"])
async def retrieve(response_id: str):
    """A stored response."""
    return Response(orjson.dumps((await stored(response_id))["response"]), content_type="application/json")


@route("/responses/<response_id>", methods=["DELETE"])
async def delete(response_id: str):
    """Delete a stored response."""
    if not await store().delete(caller(), response_id):
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
    return Response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                    content_type="application/json")


@route("/responses/<response_id>/input_items", methods=["GET"])
async def input_items(response_id: str):
    """The input items of a stored response (as messages)."""
    found = await stored(response_id)
    items = [{"type": "message", "id": new_id("msg_"), "role": m["role"], "status": "completed",
              "content": [{"type": "input_text", "text": m.get("content") or ""}]}
             for m in found["input"] if isinstance(m.get("content"), (str, type(None)))]
    return Response(orjson.dumps({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None, "has_more": False}),
                    content_type="application/json")


@hookimpl
def localai_register_routes(app):
    from .core import document

    app.register_blueprint(bp)
    document({"dialect_responses.create": {200: {"application/json": {"type": "object"},
                                                  "text/event-stream": {"type": "object"}}}})
