"""The neutral chat request: what every dialect's wire becomes, and all that :mod:`.options` reads.

Dialects map their wire into the chat body (:mod:`.body`, the shape the inference hooks see);
:func:`chat_request` types the validated body into these dataclasses. Room for what comes
next: message ``content`` may hold parts (images), ``extra`` holds options not modelled yet
(reasoning).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import BadRequest


@dataclass(slots=True)
class ToolCall:
    """A call the assistant made (in the history), or makes (in a reply)."""

    id: str
    name: str
    arguments: str = ""  # JSON text


@dataclass(slots=True)
class Message:
    """One message; ``content`` is text, or a list of parts (``{"type": "text", "text"}``,
    ``{"type": "image_url", ...}``)."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str = ""
    tool_call_id: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def text(self) -> str:
        """The text; parts other than text are refused (no backend takes them yet)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.get("type") != "text":
                raise BadRequest(f"content parts of type {part.get('type')!r} are not supported by this model",
                                 param="messages")
            texts.append(part.get("text") or "")
        return "\n".join(texts)


@dataclass(slots=True)
class Sampling:
    """Sampling settings; None: the model config's default, else the kernel's."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repeat_penalty: float | None = None
    grammar: str | None = None

    @classmethod
    def of(cls, source: Any) -> "Sampling":
        """The sampling settings of a request object with attributes of these names."""
        return cls(**{f.name: getattr(source, f.name, None) for f in fields(cls)})


@dataclass
class ChatRequest:
    """One chat request, whichever dialect it came in."""

    model: str | None
    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)  # [{"type": "function", "function": {...}}]
    tool_choice: str | dict[str, Any] | None = None  # "auto", "none", "required", or a named function
    parallel_tool_calls: bool | None = None
    json_schema: dict[str, Any] | None = None  # the schema a reply must match
    sampling: Sampling = field(default_factory=Sampling)
    stops: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    stream: bool = False
    include_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def chat_request(req: Any) -> ChatRequest:
    """The neutral request for a validated chat body (:class:`.body.ChatCompletionRequest`)."""
    messages = []
    for m in req.messages:
        content = m.content if m.content is None or isinstance(m.content, str) else \
            [p.model_dump(exclude_none=True) for p in m.content]
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()]
        messages.append(Message(m.role, content, m.name or "", m.tool_call_id or "", calls))
    choice = req.tool_choice
    return ChatRequest(
        model=req.model,
        messages=messages,
        tools=[t.model_dump(exclude_none=True) for t in req.tools or ()],
        tool_choice=choice if choice is None or isinstance(choice, str) else choice.model_dump(exclude_none=True),
        parallel_tool_calls=req.parallel_tool_calls,
        json_schema=req.response_format.schema_to_enforce() if req.response_format else None,
        sampling=Sampling.of(req),
        stops=req.stop_list(),
        max_tokens=req.token_limit,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
        stream=req.stream,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )
