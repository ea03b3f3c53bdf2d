"""What the dialect adapters share beyond the chat core (:mod:`localai.chat`): ids, tool-call
arguments as values, and documenting a dialect's routes in ``/openapi.json``.

An adapter maps its request to the chat body (:mod:`localai.chat.body`) and calls
:func:`localai.chat.start.start_chat`; it then iterates the turn's events
(:mod:`localai.chat.turn`) and encodes its own wire format.
"""

from __future__ import annotations

import json
import uuid
from typing import Any


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def arguments_object(arguments: str) -> Any:
    """A tool call's arguments (JSON text) as a value; ``{}`` when empty, the text when not JSON."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def document(endpoints: dict[str, dict[int, dict[str, Any]]], error_schema: dict[str, Any] | None = None) -> None:
    """Describe a dialect's routes in ``/openapi.json``: ``endpoints`` maps an endpoint name to
    ``{status: {media type: schema}}``; every error status gets ``error_schema`` (the dialect's
    own error shape) unless listed."""
    from ..api import openapi

    for endpoint, statuses in endpoints.items():
        documented = dict(statuses)
        if error_schema is not None:
            for status in openapi.ERROR_STATUSES:
                documented.setdefault(status, {"application/json": error_schema})
        openapi.RESPONSES[endpoint] = documented
