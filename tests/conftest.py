"""Every OpenAI-route response a test receives over httpx or httpx2 (``httpx.get``/``post``, the
openai SDK, sync or async) is checked against OpenAI's OpenAPI document (``tests/openapi_wire.py``) as the
test reads it; a test that received a non-conforming body fails at teardown with the problems.

Of a body read only in part (the openai SDK stops reading at ``[DONE]``, a test hangs up
mid-stream) the whole events of an SSE stream are checked, a JSON body not at all. A test that must see a
non-conforming body (a verbatim HTTP upstream) opts out with ``@pytest.mark.openai_wire_unchecked``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

import pytest

from tests import openapi_wire


def pytest_configure(config):
    config.addinivalue_line("markers", "openai_wire_unchecked: do not check OpenAI-route responses against "
                                       "OpenAI's OpenAPI document in this test")


class Recorded:
    """Keeps what the reader of a response body read; ``finish(body, complete)`` gets it at close."""

    def __init__(self, inner, finish: Callable[[bytes, bool], None]):
        self.inner, self.finish, self.parts, self.complete = inner, finish, [], False

    def done(self):
        if self.finish is not None:
            self.finish(b"".join(self.parts), self.complete)
            self.finish = None


class SyncRecorded(Recorded):
    def __iter__(self):
        for part in self.inner:
            self.parts.append(part)
            yield part
        self.complete = True

    def close(self):
        self.inner.close()
        self.done()


class AsyncRecorded(Recorded):
    async def __aiter__(self):
        async for part in self.inner:
            self.parts.append(part)
            yield part
        self.complete = True

    async def aclose(self):
        await self.inner.aclose()
        self.done()


def checker(request, response, found: list[str]) -> Callable | None:
    """What checks this response's body once read (None: not an OpenAI route, or encoded)."""
    method, path = request.method, request.url.path
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    if encoded or openapi_wire.operation(method, path) is None:
        return None
    content_type = response.headers.get("content-type", "")

    def finish(body: bytes, complete: bool):
        if not complete:
            if not content_type.startswith("text/event-stream"):
                return
            body = body[: body.rfind(b"\n\n") + 2]  # the events read whole
        try:
            found.extend(openapi_wire.problems(method, path, response.status_code, content_type, body))
        except Exception as exc:  # a body that is not even JSON
            found.append(f"{method} {path} {response.status_code}: {exc!r}: {body[:200]!r}")

    return finish


def record(patch: pytest.MonkeyPatch, module, found: list[str]) -> None:
    """Wrap ``module``'s (httpx or httpx2, which the openai SDK uses) sync and async transports."""
    sync_stream = type("SyncRecorded", (SyncRecorded, module.SyncByteStream), {})
    async_stream = type("AsyncRecorded", (AsyncRecorded, module.AsyncByteStream), {})
    sync_send, async_send = module.HTTPTransport.handle_request, module.AsyncHTTPTransport.handle_async_request

    def handle_request(self, request):
        response = sync_send(self, request)
        finish = checker(request, response, found)
        if finish is not None:
            response.stream = sync_stream(response.stream, finish)
        return response

    async def handle_async_request(self, request):
        response = await async_send(self, request)
        finish = checker(request, response, found)
        if finish is not None:
            response.stream = async_stream(response.stream, finish)
        return response

    patch.setattr(module.HTTPTransport, "handle_request", handle_request)
    patch.setattr(module.AsyncHTTPTransport, "handle_async_request", handle_async_request)


@pytest.fixture(scope="session", autouse=True)
def _openai_wire_recorder():
    """Wraps the HTTP clients' transports for the whole session; yields the list of problems found."""
    found: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        # httpx (the tests' own requests) and httpx2 (the openai SDK's); an env may have only one
        clients = [name for name in ("httpx", "httpx2") if importlib.util.find_spec(name) is not None]
        assert clients, "neither httpx nor httpx2 is installed: no OpenAI-route response would be checked"
        for name in clients:
            record(patch, importlib.import_module(name), found)
        yield found


@pytest.fixture(autouse=True)
def openai_wire(request, _openai_wire_recorder):
    """The problems found in this test's OpenAI-route responses (and its fixtures'), checked at teardown."""
    yield _openai_wire_recorder
    found = list(_openai_wire_recorder)
    _openai_wire_recorder.clear()
    if found and request.node.get_closest_marker("openai_wire_unchecked") is None:
        pytest.fail("responses differ from OpenAI's OpenAPI document:\n" + "\n".join(dict.fromkeys(found)),
                    pytrace=False)
