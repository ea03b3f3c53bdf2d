"""The chat body: the request shape every dialect maps its wire into and the inference hooks
(``localai_before_inference`` / ``after``) see: OpenAI's chat completions (and completions)
request, with LocalAI's extras, validated with pydantic. :mod:`.request` types it further."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import BadRequest
from ..request_limits import MAX_TOOLS, check_chat_body, check_stops


INT32_MAX = 2**31 - 1  # the backends' protobuf fields are int32: larger values are a 400, not a crash
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]


class Request(BaseModel):
    """Unknown fields are accepted and ignored, as OpenAI clients send many."""

    model_config = ConfigDict(extra="allow")


class StreamOptions(Request):
    include_usage: bool = False


class Sampling(Request):
    """Sampling settings shared by chat and completions."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    min_p: float | None = Field(default=None, ge=0, le=1)
    seed: Int32 | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repeat_penalty: float | None = Field(default=None, ge=0)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    grammar: str | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value):
        check_stops(value, "stop")  # LimitExceeded is not a ValueError: it reaches the client as it is
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class ContentPart(Request):
    type: str
    text: str | None = None


FunctionName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class FunctionDef(Request):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Request):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Request):
    name: FunctionName


class NamedToolChoice(Request):
    type: Literal["function"]
    function: NamedFunction


class ToolCallFunction(Request):
    name: str
    arguments: str = ""


class ToolCall(Request):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolCallFunction


class JsonSchemaFormat(Request):
    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema_to_enforce(self) -> dict[str, Any] | None:
        """The JSON schema replies must match (any JSON object for ``json_object``), or None."""
        if self.type == "json_object":  # with llama.cpp's server's extension: a "schema" to match
            schema = (self.model_extra or {}).get("schema")
            return schema if isinstance(schema, dict) and schema else {"type": "object"}
        if self.type == "json_schema":
            if self.json_schema is None:
                raise BadRequest("response_format of type json_schema needs a json_schema", param="response_format")
            return self.json_schema.schema_ or {"type": "object"}
        return None


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None

    def text(self) -> str:
        """The message's text; only text content parts are supported."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.type != "text":
                raise BadRequest(f"content parts of type {part.type!r} are not supported by this model",
                                 param="messages")
            texts.append(part.text or "")
        return "\n".join(texts)

    def part_types(self) -> set[str]:
        return set() if self.content is None or isinstance(self.content, str) else {p.type for p in self.content}


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="before")
    @classmethod
    def _limits(cls, data):
        check_chat_body(data)  # on the raw body, before pydantic copies it (see request_limits)
        return data

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Sampling):
    prompt: str | list[str] = Field(...)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    def prompts(self) -> list[str]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        if not self.prompt:
            raise BadRequest("prompt must not be an empty list", param="prompt")
        return list(self.prompt)


def parse(schema: type[Request], body: Any) -> Any:
    """Validate a JSON body against ``schema``; bad input is a 400 in the OpenAI shape."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or None
        message = f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
        if len(exc.errors()) > 1:
            message += f" (and {len(exc.errors()) - 1} more problems)"
        raise BadRequest(message, param=where, code="invalid_value") from None
