"""OpenAI's Responses create request (``POST /v1/responses``) as pydantic models: ``input`` (a
string or items: messages, ``function_call``, ``function_call_output``, ``reasoning``),
``instructions``, ``tools``, ``tool_choice``, ``text.format``, ``previous_response_id``,
``store``, ``reasoning``, ``include``, ``metadata``, ``prompt_cache_key``, ``client_metadata``,
... Items and content parts of types the kernel does not map parse as ``Other*`` so that the
adapter can name the type it refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ..request_limits import check_count
from .wire import EchoedModel, WireModel, check_raw, string_or_list


class TextPart(WireModel):
    type: Literal["input_text", "output_text", "text"]
    text: str = ""


class ImagePart(WireModel):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class RefusalPart(WireModel):
    type: Literal["refusal"]
    refusal: str = ""


class OtherPart(WireModel):
    """A part the kernel does not map (``input_file``, ``input_audio``, ...)."""

    type: Any = None


PART_TYPES = {"input_text": "text", "output_text": "text", "text": "text", "input_image": "image",
              "refusal": "refusal"}


def part_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return PART_TYPES.get(kind, "other") if isinstance(kind, str) else "other"


Part = Annotated[Union[Annotated[TextPart, Tag("text")], Annotated[ImagePart, Tag("image")],
                       Annotated[RefusalPart, Tag("refusal")], Annotated[OtherPart, Tag("other")]],
                 Discriminator(part_tag)]


class MessageItem(WireModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None
    status: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        return string_or_list(value, "content parts")


class FunctionCallItem(WireModel):
    type: Literal["function_call"]
    call_id: str | None = None
    id: str | None = None
    name: str = ""
    arguments: str = ""
    namespace: str | None = None


class FunctionCallOutputItem(WireModel):
    type: Literal["function_call_output"]
    call_id: str = ""
    output: str | list[Part] = ""

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, value: Any) -> Any:
        return string_or_list(value, "content parts")


class ReasoningItem(WireModel):
    """A previous turn's reasoning: accepted and dropped."""

    type: Literal["reasoning"]


class OtherItem(WireModel):
    """An item the kernel does not map (``web_search_call``, ``item_reference``, ...)."""

    type: Any = None


ITEM_TYPES = {"message", "function_call", "function_call_output", "reasoning"}


def item_tag(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ITEM_TYPES else "other"


Item = Annotated[Union[Annotated[MessageItem, Tag("message")], Annotated[FunctionCallItem, Tag("function_call")],
                       Annotated[FunctionCallOutputItem, Tag("function_call_output")],
                       Annotated[ReasoningItem, Tag("reasoning")], Annotated[OtherItem, Tag("other")]],
                 Discriminator(item_tag)]


class NamespaceFunction(EchoedModel):
    """A tool inside a ``namespace`` tool (a ``function``; other types are not offered)."""

    type: str = "function"
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(EchoedModel):
    """A tool: ``function`` and ``namespace`` tools are offered to the model, the others are not
    (:mod:`.responses_tools`)."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    tools: list[NamespaceFunction] | None = None  # a namespace's functions (OpenAI's shape)
    functions: list[NamespaceFunction] | None = None  # ... or under this name

    @property
    def members(self) -> list[NamespaceFunction]:
        return (self.tools or []) + (self.functions or [])


class ToolChoice(EchoedModel):
    type: str
    name: str = ""
    namespace: str | None = None
    mode: str | None = None  # allowed_tools
    tools: list[Any] | None = None  # allowed_tools


class TextFormat(EchoedModel):
    type: Literal["text", "json_schema", "json_object"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(WireModel):
    format: TextFormat | None = None
    verbosity: str | None = None


class CreateRequest(WireModel):
    model: str | None = None
    input: str | list[Item] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    # accepted, not used by the kernel (yet)
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: str | None = None
    background: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    client_metadata: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _limits(cls, data: Any) -> Any:
        check_raw(data, messages="input")  # before pydantic copies it
        tools = data.get("tools") if isinstance(data, dict) else None
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            for key in ("tools", "functions"):
                if isinstance(tool, dict):
                    check_count(tool.get(key), "max_tools", f"tools.{i}.{key}", "tools")
        return data

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        return string_or_list(value, "items")

    @property
    def format(self) -> TextFormat | None:
        return self.text.format if self.text else None
