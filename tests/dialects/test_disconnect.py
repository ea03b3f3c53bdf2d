"""A client that goes away mid-stream frees its model at once, in every dialect."""

from __future__ import annotations

import httpx
import pytest

from tests.kernel_helpers import wait_until

WORDS = " ".join(f"w{i}" for i in range(300))
STREAMS = {
    "anthropic": ("/v1/messages", {"model": "echo-slow", "max_tokens": 1000, "stream": True,
                                   "messages": [{"role": "user", "content": WORDS}]}),
    "ollama": ("/api/chat", {"model": "echo-slow", "messages": [{"role": "user", "content": WORDS}]}),
    "responses": ("/v1/responses", {"model": "echo-slow", "stream": True, "input": WORDS}),
}


def in_flight(server) -> list[int]:
    return [m["in_flight"] for m in httpx.get(server.url("/system"), timeout=10).json()["loaded_models"]
            if m["id"] == "echo-slow"]


@pytest.mark.parametrize("dialect", sorted(STREAMS))
def test_disconnect_mid_stream_releases_the_model(dialect_server, dialect):
    path, body = STREAMS[dialect]
    with httpx.stream("POST", dialect_server.url(path), json=body, timeout=30) as response:
        for count, _ in enumerate(response.iter_lines()):
            if count == 20:
                assert in_flight(dialect_server) == [1]
                break
    wait_until(lambda: in_flight(dialect_server) == [0], timeout=5)
