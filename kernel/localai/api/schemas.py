"""Request schemas of the kernel's HTTP routes (pydantic); the chat and completions bodies are the
chat core's (:mod:`localai.chat.body`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..chat.body import (INT32_MAX, ChatCompletionRequest, CompletionRequest, Int32, Request,  # noqa: F401
                         TokenId, parse)
from ..errors import BadRequest


class EmbeddingRequest(Request):
    model: str | None = None
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def inputs(self) -> list[str | list[int]]:
        """Each input as text or as a list of token ids."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if not value:
            raise BadRequest("input must not be empty", param="input")
        if all(isinstance(item, int) for item in value):
            return [list(value)]  # one tokenised input
        return list(value)


class ModelRequest(Request):
    model: str


class TokenizeRequest(Request):
    model: str
    content: str


class BackendApplyRequest(Request):
    """``POST /backends/apply``: a gallery ``id`` (``name`` or ``gallery@name``) or a ``uri``."""

    id: str | None = Field(default=None, min_length=1)
    uri: str | None = Field(default=None, min_length=1)
    name: str | None = None
    alias: str = ""
    force: bool = False

    def target(self) -> str:
        if not (self.id or self.uri):
            raise BadRequest("give the backend to install as 'id' (a gallery name) or 'uri'", param="id")
        return self.uri or self.id  # type: ignore[return-value]
