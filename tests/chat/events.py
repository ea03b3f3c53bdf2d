"""A scripted chat turn for the translation tests: the core's events without a backend."""

from __future__ import annotations

import orjson

from localai.chat.turn import ERROR, FINISH, TEXT, TOOL, USAGE, usage
from localai.errors import BackendError

__all__ = ["ERROR", "FINISH", "TEXT", "TOOL", "USAGE", "ScriptedTurn", "sse_events", "backend_failure"]


class ScriptedTurn:
    """Yields ``events``; its finish reason, stop sequence and token counts come from its FINISH and
    USAGE events, as a real turn's do."""

    def __init__(self, events: list[tuple], name: str = "m"):
        self.events, self.name = events, name
        self.finish_reason, self.stop_sequence = "stop", None
        self.prompt_tokens = self.completion_tokens = self.prompt_tokens_cached = 0
        self.started = self.loaded = self.first_token = self.finished = 0.0

    def usage(self):
        return usage(self.prompt_tokens, self.completion_tokens, self.prompt_tokens_cached)

    async def __aiter__(self):
        for event in self.events:
            if event[0] == USAGE:
                _, self.prompt_tokens, self.completion_tokens, self.prompt_tokens_cached = event
            elif event[0] == FINISH:
                _, self.finish_reason, self.stop_sequence = event
            yield event


def backend_failure() -> BackendError:
    return BackendError("the backend crashed", code="backend_error")


async def collect_body(response) -> bytes:
    return b"".join([chunk async for chunk in response.response])


def sse_events(raw: bytes) -> list[tuple[str | None, object]]:
    """``(event name or None, data as JSON or the raw string)`` of each SSE event."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((name, data if data == "[DONE]" else orjson.loads(data)))
    return out
