"""Tool calls and structured output for LLM backends, on any model (stdlib only).

The kernel sends what the client asked for in the contract fields LocalAI uses:
``PredictOptions.Tools`` (the OpenAI ``tools`` array, JSON), ``ToolChoice`` (``"auto"``,
``"none"``, ``"required"`` or ``{"type": "function", "function": {"name": ...}}``, JSON),
``Metadata["json_schema"]`` (the schema of ``response_format``, JSON) and
``Metadata["parallel_tool_calls"]``. :func:`plan` turns them into what a llama.cpp-style
backend can run: the chat messages to template (tools described in a system block, earlier
tool calls and ``role: tool`` results written as text, so templates that know nothing of
tools still work), and a JSON schema the backend compiles to a grammar:

- ``required`` / a named function: the reply is forced to ``{"name": ..., "parameters": {...}}``
  (an array of them with ``parallel_tool_calls: true``), arguments matching the tool's schema;
- ``auto``: the model answers freely; a reply that is exactly such a JSON call is a tool call;
- ``none``: tools are not shown; plain text.

:class:`ToolCallStream` parses the reply into ``ChatDelta.tool_calls`` pieces while it streams.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

TOOLS_HEADER = (
    "You can call these functions. To call one, reply with only a JSON object of the form "
    '{"name": <function name>, "parameters": <arguments object>} and nothing else.'
)
FORCED_SUFFIX = "Reply now with a function call."
NAME_RE = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
ARGS_RE = re.compile(r'"parameters"\s*:\s*')
# "name" sorts before "parameters": grammar engines that emit keys in sorted order (llguidance)
# still write the name first, so a streamed call's name is known before its arguments
LITERAL_KEYS = frozenset({"const", "enum", "default", "examples"})  # values, not schemas
SCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


class PlanError(ValueError):
    """The request's tools, tool choice or schema cannot be used (the caller's fault)."""


@dataclass
class Plan:
    """What to run: messages (None when the kernel sent a rendered prompt), a schema to enforce."""

    messages: list[dict[str, Any]] | None
    schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    mode: str = ""  # "" (no tools), "forced", "auto"

    @property
    def tool_names(self) -> set[str]:
        return {function_of(t).get("name", "") for t in self.tools}


def function_of(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    return fn if isinstance(fn, dict) else {}


def closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object schema that lists its
    properties and says nothing about others: a stricter subset (every reply still validates
    against the original) that keeps small models from inventing keys until ``max_tokens``.
    Visits each value once (linear in the schema's size); ``$ref`` is not followed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in LITERAL_KEYS:
            out[key] = value
        elif key in SCHEMA_MAP_KEYS and isinstance(value, dict):  # name → schema: the map is no schema
            out[key] = {name: closed(sub) for name, sub in value.items()}
        else:
            out[key] = closed(value)
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one call of ``tool``: its name, then arguments matching its parameters."""
    fn = function_of(tool)
    params = dict(closed(fn.get("parameters") or {"type": "object", "properties": {}}))
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": fn.get("name", "")}, "parameters": params},
        "required": ["name", "parameters"],
        "additionalProperties": False,
    }
    for key in ("$defs", "definitions"):  # $refs inside the arguments point at the root
        if key in params:
            schema[key] = params.pop(key)
    return schema


def forced_schema(tools: list[dict[str, Any]], parallel: bool) -> dict[str, Any]:
    """One call of any of ``tools`` (or one or more calls, when ``parallel``)."""
    calls = [call_schema(t) for t in tools]
    defs: dict[str, Any] = {}
    for c in calls:
        defs.update(c.pop("$defs", {}))
        defs.update(c.pop("definitions", {}))
    one: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    schema = {"type": "array", "items": one, "minItems": 1} if parallel else one
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def _loads(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise PlanError(f"{what} is not valid JSON: {exc}") from None


def describe_tools(tools: list[dict[str, Any]]) -> str:
    lines = [TOOLS_HEADER, "Functions:"]
    for tool in tools:
        fn = function_of(tool)
        spec = {"name": fn.get("name"), "description": fn.get("description", ""),
                "parameters": fn.get("parameters") or {}}
        lines.append(json.dumps(spec, ensure_ascii=False))
    return "\n".join(lines)


def call_text(calls: list[dict[str, Any]]) -> str:
    """Earlier tool calls of an assistant message, written the way the model is asked to call."""
    items = []
    for call in calls:
        fn = call.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except ValueError:
            pass
        items.append({"name": fn.get("name", ""), "parameters": args})
    return json.dumps(items[0] if len(items) == 1 else items, ensure_ascii=False)


def text_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]], forced: bool) -> list[dict[str, Any]]:
    """The conversation for a template that knows nothing of tools: the tools in a system block,
    assistant tool calls as their JSON, ``role: tool`` results as user messages naming the call."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role", "user"), m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = m["tool_calls"]
            for call in calls:
                names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
            text = call_text(calls)
            out.append({"role": "assistant", "content": f"{content}\n{text}" if content else text})
        elif role in ("tool", "function"):
            name = names.get(m.get("tool_call_id") or "", "") or m.get("name") or "the function"
            out.append({"role": "user", "content": f"Result of {name}: {content}"})
        else:
            out.append({"role": role, "content": content})
    if tools:
        block = describe_tools(tools) + ("\n" + FORCED_SUFFIX if forced else "")
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {"role": out[0]["role"], "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def plan(tools_json: str, tool_choice_json: str, metadata: Any, messages: list[dict[str, Any]] | None) -> Plan:
    """What to run for these contract fields (see the module docstring)."""
    tools = _loads(tools_json, "Tools") if tools_json else []
    if not isinstance(tools, list):
        raise PlanError("Tools must be a JSON array")
    choice: Any = ("auto" if tools else "none") if not tool_choice_json else tool_choice_json
    if tool_choice_json and tool_choice_json[:1] in ('"', "{"):
        choice = _loads(tool_choice_json, "ToolChoice")
    schema = closed(_loads(metadata["json_schema"], "json_schema")) if metadata.get("json_schema") else None
    parallel = (metadata.get("parallel_tool_calls") or "").lower() == "true"
    has_history = messages is not None and any(m.get("tool_calls") or m.get("role") in ("tool", "function")
                                               for m in messages)
    if isinstance(choice, dict):
        name = function_of(choice).get("name")
        chosen = [t for t in tools if function_of(t).get("name") == name]
        if not chosen:
            raise PlanError(f"tool_choice names {name!r}, which is not among the tools")
        tools, mode = chosen, "forced"
    elif choice == "required":
        if not tools:
            raise PlanError("tool_choice 'required' needs at least one tool")
        mode = "forced"
    elif choice == "auto":
        mode = "auto" if tools else ""
    elif choice == "none":
        tools, mode = [], ""
    else:
        raise PlanError(f"unknown tool_choice {choice!r}")
    if mode == "forced":
        schema = forced_schema(tools, parallel)
    if messages is not None and (tools or has_history):
        messages = text_messages(messages, tools, mode == "forced")
    return Plan(messages=messages, schema=schema, tools=tools, mode=mode)


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def parse_calls(text: str, names: set[str]) -> list[dict[str, str]] | None:
    """The calls in a complete reply ``[{"id", "name", "arguments"}]``, or None when it is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        args = item.get("parameters", item.get("arguments")) if isinstance(item, dict) else None
        if not (isinstance(item, dict) and item.get("name") in names and isinstance(args, dict)):
            return None
        calls.append({"id": new_call_id(), "name": item["name"], "arguments": json.dumps(args, ensure_ascii=False)})
    return calls or None


class ToolCallStream:
    """Turns a forced call's text, as it streams, into ``(index, id, name, arguments piece)`` deltas:
    id and name once the name is complete, then the arguments' JSON text in pieces."""

    def __init__(self) -> None:
        self.buf = ""
        self.pos = 0
        self.state = "name"
        self.index = -1
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.count = 0

    def feed(self, text: str) -> list[tuple[int, str, str, str]]:
        self.buf += text
        out: list[tuple[int, str, str, str]] = []
        while True:
            if self.state == "name":
                match = NAME_RE.search(self.buf, self.pos)
                if not match:
                    return out
                self.index += 1
                self.count += 1
                out.append((self.index, new_call_id(), json.loads(f'"{match.group(1)}"'), ""))
                self.pos, self.state = match.end(), "seek"
            elif self.state == "seek":
                match = ARGS_RE.search(self.buf, self.pos)
                if not match or match.end() >= len(self.buf):
                    return out
                self.pos, self.state, self.depth = match.end(), "args", 0
            else:
                start, end = self.pos, self._scan()
                if end > start:
                    out.append((self.index, "", "", self.buf[start:end]))
                self.pos = end
                if self.state == "args":
                    return out

    def _scan(self) -> int:
        """Advance over the arguments' JSON; leaves state "args" while it is unfinished."""
        i = self.pos
        while i < len(self.buf):
            ch = self.buf[i]
            i += 1
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.state = "name"
                    return i
            elif self.depth == 0 and not ch.isspace():
                self.state = "name"  # a scalar where an object belongs: the grammar prevents it
                return i
        return i


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role and content only, for templates rendered outside the backend."""
    return [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in messages]


def tool_deltas(calls: list[dict[str, str]]) -> Any:
    """A ``ChatDelta`` holding whole calls (non-streamed replies, or the end of a buffered stream)."""
    from localai.proto import backend_pb2

    return backend_pb2.ChatDelta(tool_calls=[
        backend_pb2.ToolCallDelta(index=i, id=c["id"], name=c["name"], arguments=c["arguments"])
        for i, c in enumerate(calls)])


def finish_reply(plan_: Plan, text: str, reply: Any) -> Any:
    """Fill ``reply.chat_deltas`` with the tool calls in a complete reply's ``text`` (if any)."""
    if plan_.mode:
        calls = parse_calls(text.strip(), plan_.tool_names)
        if calls:
            reply.chat_deltas.append(tool_deltas(calls))
    return reply


class StreamShaper:
    """Turns streamed text into ``Reply`` messages: plain text as ``message``; with tools, the
    calls as ``chat_deltas``. Forced calls stream their arguments as they come; under ``auto`` a
    reply that starts like JSON is held back until it is known to be a call or text."""

    def __init__(self, plan_: Plan):
        from localai.proto import backend_pb2

        self.pb = backend_pb2
        self.plan = plan_
        self.calls = ToolCallStream() if plan_.mode == "forced" else None
        self.held: list[str] | None = None
        self.seen = ""

    def _delta_reply(self, pieces: list[tuple[int, str, str, str]]) -> Any:
        pb = self.pb
        return pb.Reply(chat_deltas=[pb.ChatDelta(tool_calls=[
            pb.ToolCallDelta(index=i, id=cid, name=name, arguments=args) for i, cid, name, args in pieces])])

    def feed(self, text: str, logprobs: bytes = b"") -> list[Any]:
        if self.calls is not None:
            self.seen += text
            pieces = self.calls.feed(text)
            return [self._delta_reply(pieces)] if pieces else []
        if self.plan.mode == "auto":
            if self.held is not None:
                self.held.append(text)
                return []
            if not (self.seen + text).strip():
                self.seen += text
                return []
            if (self.seen + text).lstrip()[:1] in ("{", "["):
                self.held = [self.seen, text]
                return []
            text, self.seen = self.seen + text, ""
        return [self.pb.Reply(message=text.encode(), logprobs=logprobs)]

    def finish(self) -> list[Any]:
        if self.calls is not None:
            # cut off before a call began (max_tokens): what there is, as text
            return [] if self.calls.count else [self.pb.Reply(message=self.seen.encode())] if self.seen else []
        if self.held is not None:
            text = "".join(self.held)
            calls = parse_calls(text.strip(), self.plan.tool_names)
            if calls:
                return [self.pb.Reply(chat_deltas=[tool_deltas(calls)])]
            return [self.pb.Reply(message=text.encode())]
        return [self.pb.Reply(message=self.seen.encode())] if self.seen else []
