"""Limits on what one chat request may ask the server to prepare, the same in every dialect.

Before any backend runs, a chat request costs the server CPU: its JSON schemas (response
format, tool parameters) are walked and rewritten into a grammar's schema, its stop sequences
are matched against every streamed piece, its messages and tools are converted and templated.
These limits bound that work. They are checked on the OpenAI-shaped chat body every dialect
builds (``ChatCompletionRequest`` validates it), and on Anthropic's ``stop_sequences``. Over a
limit is :class:`LimitExceeded`, a 400 naming the limit, which each dialect's error handler
writes in its own shape. The checks stop as soon as a limit is passed: their cost is bounded by
the limits, not by the request.
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest

MAX_MESSAGES = 10_000  # messages in one request
MAX_MESSAGE_PARTS = 10_000  # content parts and tool calls in all messages together
MAX_TOOLS = 128
MAX_STOP_SEQUENCES = 16
MAX_STOP_LENGTH = 512  # characters in one stop sequence
MAX_SCHEMA_DEPTH = 64  # nested objects and arrays in one JSON schema (the schema itself is level 1)
MAX_SCHEMA_VALUES = 50_000  # JSON values in all of a request's schemas together (tools, response format)
# (measured: Claude Code's 15 tools, ~72 kB with their descriptions, hold ~370 schema values; even
# 80 kB of bare schemas is ~4,000: 12-21 tools and 128 tools of that size fit well under both limits)

LIMITS = {"max_messages": MAX_MESSAGES, "max_message_parts": MAX_MESSAGE_PARTS, "max_tools": MAX_TOOLS,
          "max_stop_sequences": MAX_STOP_SEQUENCES, "max_stop_length": MAX_STOP_LENGTH,
          "max_schema_depth": MAX_SCHEMA_DEPTH, "max_schema_values": MAX_SCHEMA_VALUES}


class LimitExceeded(BadRequest):
    """A request over one of the limits above: a 400 whose message names the limit."""

    def __init__(self, message: str, limit: str, param: str | None = None):
        super().__init__(f"{message} (limit {limit} = {LIMITS[limit]})", code="limit_exceeded", param=param)
        self.limit = limit


def check_count(items: Any, limit: str, param: str, what: str) -> None:
    if isinstance(items, (list, dict)) and len(items) > LIMITS[limit]:
        raise LimitExceeded(f"{param}: {len(items)} {what}; at most {LIMITS[limit]} are allowed", limit, param)


def check_stops(stops: Any, param: str) -> None:
    """At most ``MAX_STOP_SEQUENCES`` stop sequences of at most ``MAX_STOP_LENGTH`` characters."""
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, list):
        return  # the caller's type check reports it
    check_count(stops, "max_stop_sequences", param, "stop sequences")
    for stop in stops:
        if isinstance(stop, str) and len(stop) > MAX_STOP_LENGTH:
            raise LimitExceeded(f"{param}: a stop sequence of {len(stop)} characters; at most {MAX_STOP_LENGTH} "
                                "are allowed", "max_stop_length", param)


def check_schema(schema: Any, param: str, budget: int = MAX_SCHEMA_VALUES) -> int:
    """Walk ``schema`` once (iteratively, ``$ref`` not followed) and return ``budget`` less its
    values; too deep or over the budget is :class:`LimitExceeded`."""
    stack = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_SCHEMA_DEPTH:
            raise LimitExceeded(f"{param}: the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels",
                                "max_schema_depth", param)
        if len(children) + len(stack) > budget:
            raise LimitExceeded(f"{param}: the request's JSON schemas hold more than {MAX_SCHEMA_VALUES} values",
                                "max_schema_values", param)
        stack.extend((child, depth + 1) for child in children)
    return budget


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def check_chat_body(body: Any) -> None:
    """The limits, on a raw OpenAI-shaped chat body (before it is validated and copied)."""
    if not isinstance(body, dict):
        return
    messages = body.get("messages")
    if isinstance(messages, list):
        check_count(messages, "max_messages", "messages", "messages")
        parts = 0
        for message in messages:
            for key in ("content", "tool_calls"):
                items = _get(message, key)
                parts += len(items) if isinstance(items, list) else 0
        if parts > MAX_MESSAGE_PARTS:
            raise LimitExceeded(f"messages: {parts} content parts and tool calls; at most {MAX_MESSAGE_PARTS} "
                                "are allowed", "max_message_parts", "messages")
    check_stops(body.get("stop"), "stop")
    budget = MAX_SCHEMA_VALUES
    tools = body.get("tools")
    if isinstance(tools, list):
        check_count(tools, "max_tools", "tools", "tools")
        for i, tool in enumerate(tools):
            budget = check_schema(_get(tool, "function", "parameters"), f"tools.{i}.function.parameters", budget)
    fmt = body.get("response_format")
    for param, schema in (("response_format.json_schema.schema", _get(fmt, "json_schema", "schema")),
                          ("response_format.schema", _get(fmt, "schema"))):
        budget = check_schema(schema, param, budget)
