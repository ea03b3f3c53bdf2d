"""Helpers shared by the route modules: app state, JSON in and out, ``/v1`` twins."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from ..errors import BadRequest, NotFound


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


# -- gallery jobs and galleries, shared by the backend and model gallery routes -------------


def job_or_404(job, job_id: str) -> Response:
    """A job's status as JSON, or a 404 when there is no such job."""
    if job is None:
        raise NotFound(f"no job with id {job_id!r}", code="job_not_found")
    return json_response(job.status())


def job_events(jobs) -> Response:
    """Server-sent events: every gallery job's status whenever it changes."""

    async def stream():  # runs outside the app context: it only uses ``jobs``
        async for status in jobs.events():
            yield b"data: " + orjson.dumps(status) + b"\n\n"

    response = Response(stream(), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response


def galleries_json(loaded) -> Response:
    """The configured galleries with their entry counts and load errors."""
    return json_response([{"name": g.source.name, "url": g.source.url, "error": g.error, "entries": len(g.entries)}
                          for g in loaded])
