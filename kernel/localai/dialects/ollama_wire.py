"""Ollama's ``POST /api/chat`` and ``POST /api/generate`` requests as pydantic models: ``options``
(the sampling ones are used, the runner ones such as ``num_ctx`` accepted), ``format`` (``"json"``
or a JSON schema), ``tools``, ``images``, ``keep_alive``, ``think``, ``stream``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from .wire import WireModel, check_raw, one_of_error


class ToolCallFunction(WireModel):
    name: str = ""
    arguments: dict[str, Any] | str | None = None


class ToolCall(WireModel):
    function: ToolCallFunction


class Message(WireModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    name: str | None = None
    thinking: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        if value not in ("system", "user", "assistant", "tool"):
            raise one_of_error("must be system, user, assistant or tool")
        return value


class Options(WireModel):
    """The model options; those not listed (``num_ctx``, ``mirostat``, ...) are accepted and ignored."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_predict: int | None = None  # -1: no limit


class Generation(WireModel):
    """What ``/api/chat`` and ``/api/generate`` share."""

    model: str | None = None
    name: str | None = None  # older clients
    format: Literal["json", ""] | dict[str, Any] | None = None
    options: Options | None = None
    stream: bool | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _limits(cls, data: Any) -> Any:
        options = data.get("options") if isinstance(data, dict) else None
        stops = options.get("stop") if isinstance(options, dict) else None
        check_raw(data, messages="messages", stops=(stops, "stop"))  # before pydantic copies it
        return data

    @model_validator(mode="after")
    def _model(self) -> "Generation":
        if not (self.model or self.name):
            raise one_of_error("model is required")
        return self

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is not None and value not in ("json", "") and not isinstance(value, dict):
            raise one_of_error('must be "json" or a JSON schema')
        return value

    @property
    def model_name(self) -> str:
        return self.model or self.name or ""

    def sampling(self) -> dict[str, Any]:
        """The options as OpenAI chat body fields."""
        if self.options is None:
            return {}
        out = self.options.model_dump(exclude_none=True, exclude={"num_predict"}, include=set(Options.model_fields))
        if self.options.num_predict is not None and self.options.num_predict > 0:
            out["max_tokens"] = self.options.num_predict
        return out

    def response_format(self) -> dict[str, Any] | None:
        if self.format == "json":
            return {"type": "json_object"}
        if isinstance(self.format, dict):
            return {"type": "json_schema", "json_schema": {"name": "format", "schema": self.format}}
        return None


class ChatRequest(Generation):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI's function tools, validated in the chat body


class GenerateRequest(Generation):
    prompt: str | None = None
    system: str | None = None
    images: list[str] | None = None
    raw: bool | None = None
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
