"""``--ollama-address`` / ``LOCALAI_OLLAMA_ADDRESS``: the Ollama routes on a second listener (e.g.
``127.0.0.1:11434``, Ollama's port), so tools that assume Ollama's address work unchanged.

The server (:mod:`localai.server`) binds that listener; this module only says what it answers: the
same app (same models, keys, admission, metrics, security checks), but only ``/api/...`` and
Ollama's ``GET /`` heartbeat ("Ollama is running"); its lifespan is the main listener's.
"""

from __future__ import annotations


def ollama_only(app):
    """An ASGI app: ``app`` for Ollama's paths, without lifespan events (the main listener has them)."""

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if scope["type"] == "http" and path in ("/", "") and scope.get("method") in ("GET", "HEAD"):
            body = b"Ollama is running"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        if scope["type"] == "http" and not path.startswith("/api/"):
            body = b'{"error":"not found"}'
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return asgi
