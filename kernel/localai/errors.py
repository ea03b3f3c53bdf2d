"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any


class APIError(Exception):
    """An error that becomes an HTTP response in the OpenAI error shape."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: Any = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.code = code if code is not None else status_code_name(self.status)
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response: ``code`` a string and ``param`` (or null) always there."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def status_code_name(status: int) -> str:
    """The default ``code`` of an error: its HTTP status as a name (400: ``bad_request``)."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class BadRequest(APIError):
    status = 400
    type = "invalid_request_error"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    def __init__(self, name: str):
        super().__init__(
            f'model "{name}" not found. To see available models, call GET /v1/models',
            code="model_not_found",
            param="model",
        )


class ContextLengthExceeded(BadRequest):
    """The prompt does not fit the model's context: OpenAI's ``context_length_exceeded``; the
    Anthropic and Ollama dialects word it their way from ``prompt_tokens`` and ``limit``."""

    def __init__(self, model: str, prompt_tokens: int, limit: int):
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens. Shorten the messages, or raise `context_size` in the configuration "
            f"(YAML) of model {model!r}.",
            code="context_length_exceeded",
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit


# how backends say a prompt does not fit: llama.cpp's server (xllamacpp), the llama-cpp-python
# plugin, and a neutral form any backend may use ("context_length_exceeded: prompt N tokens > M maximum")
CONTEXT_ERRORS = (
    re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"),
    re.compile(r"the prompt has (\d+) tokens, the context size is (\d+)"),
    re.compile(r"context_length_exceeded: prompt (\d+) tokens > (\d+) maximum"),
)


def context_error(model: str, detail: str) -> ContextLengthExceeded | None:
    """The backend's INVALID_ARGUMENT ``detail`` as :class:`ContextLengthExceeded`, if it is one."""
    for pattern in CONTEXT_ERRORS:
        match = pattern.search(detail)
        if match:
            return ContextLengthExceeded(model, int(match[1]), int(match[2]))
    return None


class BackendError(APIError):
    """The backend failed (crashed, refused to load, returned an error)."""

    status = 502
    type = "backend_error"


class Unavailable(APIError):
    status = 503
    type = "server_error"


class ConfigError(Exception):
    """A configuration problem that stops the server from starting."""


class LoadError(Exception):
    """A backend process could not be started or could not load its model."""
