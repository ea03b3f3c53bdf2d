"""Helpers shared by the route modules: app state, JSON in and out, ``/v1`` twins."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from ..errors import BadRequest


def state():
    """The AppState of the running app."""
    return current_app.extensions["localai"]


def versioned(bp: Blueprint):
    """A decorator registering a view under ``/v1<rule>`` and ``<rule>`` (as LocalAI does)."""

    def route(rule: str, **options):
        def decorator(func):
            bp.add_url_rule(f"/v1{rule}", view_func=func, **options)
            bp.add_url_rule(rule, endpoint=f"{func.__name__}_unprefixed", view_func=func, **options)
            return func

        return decorator

    return route


async def json_body() -> Any:
    data = await request.get_data()
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, content_type="application/json")
