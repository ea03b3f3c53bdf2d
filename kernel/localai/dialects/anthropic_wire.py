"""Anthropic's Messages request (``POST /v1/messages``, ``/v1/messages/count_tokens``) as pydantic
models, as the ``anthropic`` SDK's params types (beta ones included) describe it. Fields the kernel
does not use (``thinking`` in each form, ``context_management``, ``output_config.effort``,
``metadata``, ``service_tier``, cache controls, ...) are accepted; block types it cannot map parse as
:class:`OtherBlock` so that the adapter can say which type, in which message, it refuses.
``role: "system"`` messages (Claude Code puts its environment block in one) are allowed anywhere in
``messages``; the adapter folds them into the system prompt."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .wire import WireModel, check_raw, one_of_error, string_or_list


class TextBlock(WireModel):
    type: Literal["text"]
    text: str = ""


class ImageSource(WireModel):
    type: str
    media_type: str = "image/png"
    data: str = ""
    url: str = ""


class ImageBlock(WireModel):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(WireModel):
    type: Literal["tool_use"]
    id: str = ""
    name: str = ""
    input: Any = None


class ThinkingBlock(WireModel):
    """``thinking`` and ``redacted_thinking``: a previous turn's reasoning, dropped."""

    type: Literal["thinking", "redacted_thinking"]


class OtherBlock(WireModel):
    """A block of a type the kernel does not map (``document``, ``server_tool_use``, ...)."""

    type: Any = None


BLOCK_TYPES = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in BLOCK_TYPES else "other"


class ToolResultBlock(WireModel):
    type: Literal["tool_result"]
    tool_use_id: str = ""
    content: str | list[Block] | None = None
    is_error: bool | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        return string_or_list(value, "content blocks")


Block = Annotated[Union[
    Annotated[TextBlock, Tag("text")], Annotated[ImageBlock, Tag("image")],
    Annotated[ToolUseBlock, Tag("tool_use")], Annotated[ToolResultBlock, Tag("tool_result")],
    Annotated[ThinkingBlock, Tag("thinking")], Annotated[ThinkingBlock, Tag("redacted_thinking")],
    Annotated[OtherBlock, Tag("other")]], Discriminator(block_tag)]
ToolResultBlock.model_rebuild()


class Message(WireModel):
    role: Literal["user", "assistant", "system"]
    content: str | list[Block] = ""  # required but in system messages (checked below)
    clear_at: Literal["next_user_message", "never"] | None = None  # system messages (beta)

    @model_validator(mode="before")
    @classmethod
    def _content_required(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("role") != "system" and "content" not in data:
            raise one_of_error("content: Field required")
        return data

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        if value not in ("user", "assistant", "system"):
            raise one_of_error("must be 'user', 'assistant' or 'system'")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        return string_or_list(value, "content blocks")


class Tool(WireModel):
    """A client tool (``type`` absent or ``custom``); server tools parse, and are refused by the adapter."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class ToolChoice(WireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str = ""
    disable_parallel_tool_use: bool | None = None


class OutputFormat(WireModel):
    type: str
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class OutputConfig(WireModel):
    format: OutputFormat | None = None
    effort: str | None = None


class ThinkingConfig(WireModel):
    """``thinking``: ``enabled`` (``budget_tokens``), ``disabled``, ``adaptive``, ``between_tools``;
    ``display`` (``summarized``, ``omitted``). Accepted and not used yet: no reasoning is produced."""

    type: str
    budget_tokens: int | None = None
    display: str | None = None


class MessagesRequest(WireModel):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    output_format: OutputFormat | None = None
    output_config: OutputConfig | None = None
    # accepted, not used by the kernel (yet)
    thinking: ThinkingConfig | None = None
    context_management: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _limits(cls, data: Any) -> Any:
        stops = data.get("stop_sequences") if isinstance(data, dict) else None
        check_raw(data, messages="messages", stops=(stops, "stop_sequences"))  # before pydantic copies it
        return data

    @field_validator("system", mode="before")
    @classmethod
    def _system(cls, value: Any) -> Any:
        return string_or_list(value, "text blocks")

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema of ``output_format`` / ``output_config.format`` (type ``json_schema``), or None."""
        fmt = self.output_format or (self.output_config.format if self.output_config else None)
        if fmt is not None and fmt.type == "json_schema":
            return fmt.schema_ or {}
        return None


class CountTokensRequest(MessagesRequest):
    """``count_tokens`` takes the same request without ``max_tokens``."""

    max_tokens: int | None = Field(default=None, ge=1)  # type: ignore[assignment]
