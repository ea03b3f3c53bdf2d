"""OpenAI's chat completions and completions on the kernel's chat core: ``POST /v1/chat/completions``
and ``POST /v1/completions`` (also without ``/v1``), a built-in plugin like the other dialects.

The wire is the chat body itself (:mod:`localai.chat.body`); this module encodes the turn's
events: SSE chunks (the JSON around the token text encoded once per request, only the text
per token) or one JSON object. HTTP-upstream models get the body forwarded unchanged.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from quart import Blueprint, Response

from .. import hookimpl
from ..api.common import json_body, json_response, state, versioned
from ..api.forward import forward_json
from ..backends.http_upstream import is_http_model
from ..chat.body import CompletionRequest
from ..chat.capabilities import completion_features, require_features
from ..chat.start import completion_options, open_turn, prepare, start_prepared
from ..chat.turn import ERROR, FINISH, TEXT, TOOL
from ..errors import BadRequest
from ..models.templates import render

bp = Blueprint("openai_chat", __name__)
route = versioned(bp)
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's usage object; ``cached_tokens``: prompt tokens the backend's KV cache served."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


class Chunks:
    """Pre-encoded SSE events for one streamed response; only token text is encoded per chunk."""

    MARK = "\x00"
    shape_logprobs = None  # backends send chat-shaped logprobs; /v1/completions reshapes them

    def __init__(self, base: dict[str, Any], choice_for):
        self.base = base
        self.choice_for = choice_for
        template = orjson.dumps({**base, "choices": [choice_for(self.MARK, None)]})
        head, tail = template.split(orjson.dumps(self.MARK), 1)
        self.head, self.tail = b"data: " + head, tail + b"\n\n"

    def text(self, piece: str) -> bytes:
        return self.head + orjson.dumps(piece) + self.tail

    def event(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**self.base, **payload}) + b"\n\n"

    def text_with_logprobs(self, piece: str, logprobs: bytes) -> bytes:
        """A text chunk whose choice carries the backend's logprobs (OpenAI-shaped JSON)."""
        value = orjson.loads(logprobs)
        if self.shape_logprobs is not None:
            value = self.shape_logprobs(value)
        return self.event({"choices": [{**self.choice_for(piece, None), "logprobs": value}]})


def tool_call_delta(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A streamed tool-call piece in OpenAI's shape: id, type and name in the first of each call."""
    if call_id or name:
        return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"index": index, "function": {"arguments": arguments}}


async def encode_stream(turn, chunks: Chunks, final_choice: dict[str, Any], *, opening: list[bytes],
                        include_usage: bool):
    """The SSE events of a turn: one per text piece or tool-call piece, the finish_reason chunk,
    then usage when asked for; a mid-stream failure becomes an error event. Ends with [DONE]."""
    for item in opening:
        yield item
    text = chunks.text
    async for event in turn:
        kind = event[0]
        if kind == TEXT:
            yield text(event[1]) if len(event) == 2 else chunks.text_with_logprobs(event[1], event[2])
        elif kind == TOOL:
            yield chunks.event({"choices": [{"index": 0, "delta": {"tool_calls": [tool_call_delta(*event[1:])]},
                                             "finish_reason": None}]})
        elif kind == FINISH:
            yield chunks.event({"choices": [{**final_choice, "finish_reason": event[1]}]})
            if include_usage:
                yield chunks.event({"choices": [], "usage": turn.usage()})
        elif kind == ERROR:
            yield b"data: " + orjson.dumps(event[1].body()) + b"\n\n"
    yield DONE


def sse(events) -> Response:
    response = Response(events, content_type="text/event-stream", headers=SSE_HEADERS)
    response.timeout = None
    return response


def finish_reason(reason: str) -> str:
    return "stop" if reason == "stop_sequence" else reason


# -- chat -------------------------------------------------------------------------------


def chat_choice(result, reason: str, want_logprobs: bool) -> dict[str, Any]:
    """The one choice of a non-streamed chat reply."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in result.tool_calls]
        message = {"role": "assistant", "content": result.text or None, "refusal": None, "tool_calls": calls}
    logprobs = chat_logprobs(result.logprobs) if want_logprobs else None
    return {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason(reason)}


def chat_logprobs(value: Any) -> dict[str, Any] | None:
    """A choice's logprobs as OpenAI sends them: ``content`` and ``refusal`` (null) both there."""
    return {"content": None, **value, "refusal": None} if isinstance(value, dict) else None


@route("/chat/completions", methods=["POST"])
async def chat_completions():
    app_state = state()
    body = await json_body()
    req, config = prepare(app_state, body)
    if is_http_model(config):
        return await forward_json(config, "/chat/completions", body, stream=req.stream)
    turn = await start_prepared(app_state, body, req, config)
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.name}
    if req.stream:
        base["object"] = "chat.completion.chunk"
        if turn.request.include_usage:
            base["usage"] = None  # every chunk but the last has usage: null (pre-encoded with the rest)
        chunks = Chunks(base, lambda text, reason: {"index": 0, "delta": {"content": text}, "finish_reason": reason})
        chunks.shape_logprobs = chat_logprobs
        opening = [chunks.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})]
        return sse(encode_stream(turn, chunks, {"index": 0, "delta": {}}, opening=opening,
                                 include_usage=turn.request.include_usage))
    reply = await turn.collect(report=False)
    result = {**base, "object": "chat.completion",
              "choices": [chat_choice(reply, turn.finish_reason, turn.request.logprobs)], "usage": turn.usage()}
    turn.report(result)
    return json_response(result)


# -- completions ------------------------------------------------------------------------


def completion_logprobs(chat_shaped: Any, offset: int = 0) -> dict[str, Any]:
    """Backends report logprobs in the chat shape (``{"content": [{token, logprob, top_logprobs}]}``);
    ``/v1/completions`` answers in OpenAI's legacy one (tokens, token_logprobs, top_logprobs, text_offset)."""
    entries = (chat_shaped or {}).get("content") or []
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.get("token", ""))
    return {
        "tokens": [e.get("token", "") for e in entries],
        "token_logprobs": [e.get("logprob") for e in entries],
        "top_logprobs": [{t.get("token", ""): t.get("logprob") for t in e.get("top_logprobs") or []}
                         for e in entries],
        "text_offset": offsets,
    }


def completion_prompt(prompt: str, config, models_path) -> str:
    if config.template.completion:
        return render(config.template.completion, models_path, input=prompt)
    return prompt


@route("/completions", methods=["POST"])
async def completions():
    app_state = state()
    body = await json_body()
    req, config = prepare(app_state, body, CompletionRequest, "completion")
    if is_http_model(config):
        return await forward_json(config, "/completions", body, stream=req.stream)
    require_features(app_state.host, config, completion_features(req), body)
    prompts = req.prompts()
    if req.stream and len(prompts) > 1:
        raise BadRequest("streaming supports a single prompt", param="prompt")
    base_options = completion_options(app_state, req, config)
    if req.logprobs is not None:
        base_options.Logprobs = 1
        base_options.TopLogprobs = req.logprobs
    base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.name}

    def options_for(prompt: str):
        options = type(base_options)()
        options.CopyFrom(base_options)
        options.Prompt = completion_prompt(prompt, config, app_state.settings.models_path)
        return options

    if req.stream:
        base["object"] = "text_completion"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if include_usage:
            base["usage"] = None
        turn = await open_turn(app_state, body, config, options_for(prompts[0]))
        chunks = Chunks(base, lambda text, reason: {"index": 0, "text": text, "logprobs": None,
                                                    "finish_reason": reason})
        chunks.shape_logprobs = completion_logprobs
        return sse(encode_stream(turn, chunks, {"index": 0, "text": "", "logprobs": None},
                                 opening=[chunks.text(prompts[0])] if req.echo else [], include_usage=include_usage))

    choices = []
    prompt_tokens = completion_tokens = 0
    for index, prompt in enumerate(prompts):
        turn = await open_turn(app_state, body, config, options_for(prompt))
        reply = await turn.collect(report=False)
        logprobs = None
        if reply.logprobs and req.logprobs is not None:
            logprobs = completion_logprobs(reply.logprobs, len(prompt) if req.echo else 0)
        choices.append({"index": index, "text": (prompt + reply.text) if req.echo else reply.text,
                        "logprobs": logprobs, "finish_reason": finish_reason(turn.finish_reason)})
        prompt_tokens += turn.prompt_tokens
        completion_tokens += turn.completion_tokens
    result = {**base, "object": "text_completion", "choices": choices,
              "usage": usage(prompt_tokens, completion_tokens)}
    app_state.host.after_inference(body, result)
    return json_response(result)


@hookimpl
def localai_register_routes(app):
    app.register_blueprint(bp)
