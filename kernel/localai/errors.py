"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

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
