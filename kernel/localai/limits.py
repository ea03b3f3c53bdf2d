"""Request body size limits per route: ``LOCALAI_UPLOAD_LIMIT`` (MB, JSON and everything else)
and ``LOCALAI_AUDIO_UPLOAD_LIMIT`` (MB, audio uploads). Over the limit is a 413 in the OpenAI
shape: from ``Content-Length`` before reading, and while reading a body without one."""

from __future__ import annotations

from quart import Quart, request

from .errors import APIError
from .settings import Settings

MB = 1024 * 1024
AUDIO_UPLOAD_RULES = ("/audio/transcriptions", "/audio/translations")


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"


def to_bytes(megabytes: float) -> int | None:
    """A limit in bytes; 0 or less means no limit."""
    return int(megabytes * MB) if megabytes > 0 else None


def install(app: Quart, settings: Settings) -> None:
    """Set each request's body limit by route before its body is read."""
    default = to_bytes(settings.upload_limit_mb)
    audio = to_bytes(settings.audio_upload_limit_mb)
    # the app-wide limit applies while a body arrives before the hook runs: make it the largest
    app.config["MAX_CONTENT_LENGTH"] = None if default is None or audio is None else max(default, audio)

    @app.before_request
    async def limit_body() -> None:
        rule = request.url_rule.rule if request.url_rule is not None else ""
        is_audio = rule.endswith(AUDIO_UPLOAD_RULES)
        limit, setting = (audio, "LOCALAI_AUDIO_UPLOAD_LIMIT") if is_audio else (default, "LOCALAI_UPLOAD_LIMIT")
        length = request.content_length
        if limit is not None and length is not None and length > limit:
            raise PayloadTooLarge(
                f"the request body is {length} bytes; this route accepts at most {limit / MB:g} MB ({setting})",
                code="request_too_large",
            )
        request.max_content_length = limit  # multipart parsing
        request.body._max_content_length = limit  # raw reads (chunked bodies); Quart fixes it at creation
