"""What the dialects' typed request models share: a pydantic base that accepts unknown fields
(clients such as Claude Code and Codex send many), parsing with errors that name the field, the
request limits checked on the raw body before pydantic copies it, and small validators.

Each dialect's wire models live beside its adapter (``anthropic_wire``, ``ollama_wire``,
``responses_wire``); the adapter parses its body with them and maps the typed request to the
chat body (:mod:`localai.chat.body`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from ..errors import BadRequest
from ..request_limits import MAX_MESSAGE_PARTS, LimitExceeded, check_count, check_stops

T = TypeVar("T", bound=BaseModel)


class WireModel(BaseModel):
    """A part of a dialect's request; unknown fields are accepted and ignored (dropped: a third
    faster to parse than keeping them)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class EchoedModel(WireModel):
    """A part the reply echoes as sent: unknown fields are kept."""

    model_config = ConfigDict(extra="allow")


def field_path(loc: tuple[Any, ...], body: Any) -> str:
    """``loc`` as the client's path (``messages.1.role``): pydantic's union member and tag names,
    which are not in the body, are left out by walking the body along it."""
    path: list[str] = []
    value = body
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        elif not (i == len(loc) - 1 and isinstance(part, str) and isinstance(value, dict)):
            continue  # a union member or a tag; only a missing field at the end is named
        path.append(str(part))
    return ".".join(path)


def parse_wire(model: type[T], body: Any) -> T:
    """``body`` validated as ``model``; bad input is a :class:`BadRequest` whose message names the
    field (``messages.1.role: ...``), which each dialect's error handler writes in its own shape."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # the deepest error is the most specific one; a union's other members fail at its prefix
        found = sorted(((field_path(tuple(e.get("loc", ())), body), str(e["msg"])) for e in exc.errors()),
                       key=lambda found: -len(found[0].split(".")) if found[0] else 0)
        where, msg = found[0]
        message = f"{where}: {msg}" if where else msg
        others = sum(1 for path, _ in found[1:] if not (where + ".").startswith(path + ".") or not path)
        if others:
            message += f" (and {others} more problems)"
        raise BadRequest(message, param=where or None) from None


def check_raw(data: Any, *, messages: str, tools: str = "tools", stops: tuple[Any, str] | None = None) -> None:
    """The request limits on a raw body, before pydantic validates and copies it: message, part
    and tool counts, and stop sequences (``stops``: the value and its name). Schemas are walked
    later, on the chat body."""
    if not isinstance(data, dict):
        return
    items = data.get(messages)
    if isinstance(items, list):
        check_count(items, "max_messages", messages, "messages")
        parts = 0
        for item in items:
            content = item.get("content") if isinstance(item, dict) else None
            parts += len(content) if isinstance(content, list) else 0
            calls = item.get("tool_calls") if isinstance(item, dict) else None
            parts += len(calls) if isinstance(calls, list) else 0
        if parts > MAX_MESSAGE_PARTS:
            raise LimitExceeded(f"{messages}: {parts} content parts and tool calls; at most {MAX_MESSAGE_PARTS} "
                                "are allowed", "max_message_parts", messages)
    check_count(data.get(tools), "max_tools", tools, "tools")
    if stops is not None:
        check_stops(*stops)


def one_of_error(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as written (no "Value error," prefix)."""
    return PydanticCustomError("invalid_value", message)


def string_or_list(value: Any, what: str) -> Any:
    """A before-validator: ``value`` must be a string or a list (of ``what``)."""
    if value is not None and not isinstance(value, (str, list)):
        raise one_of_error(f"expected a string or a list of {what}")
    return value
