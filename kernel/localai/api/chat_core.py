"""The chat core: one chat request (messages, tools, tool choice, response format, sampling)
→ ``PredictOptions`` in the contract fields LocalAI uses, and a backend's ``Reply`` → the
assistant message (text or ``tool_calls``). Dialects (OpenAI chat today) map in and out of it.

Contract fields filled: ``Messages`` (with ``tool_calls`` as JSON and ``tool_call_id``) or a
rendered ``Prompt``, ``Tools`` / ``ToolChoice`` (JSON), ``Grammar``, ``Logprobs`` /
``TopLogprobs``, and ``Metadata["json_schema"]`` (the schema a reply must match) and
``Metadata["parallel_tool_calls"]``. Backends answer tool calls in ``Reply.chat_deltas``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..backend_chat import PlanError, plan, plain_messages
from ..errors import BadRequest
from ..models.config import ModelConfig
from ..models.templates import plain_chat_prompt, render_chat
from ..proto import backend_pb2
from .common import state
from .inference import finish_reason, predict_options
from .schemas import ChatCompletionRequest


def message_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
    return out


def proto_message(m: dict[str, Any]) -> backend_pb2.Message:
    message = backend_pb2.Message(role=m["role"], content=m["content"], name=m.get("name", ""),
                                  tool_call_id=m.get("tool_call_id", ""))
    if m.get("tool_calls"):
        message.tool_calls = json.dumps(m["tool_calls"])
    return message


def tool_fields(req: ChatCompletionRequest, options: backend_pb2.PredictOptions) -> None:
    """Tools, tool choice, parallel calls, response format and logprobs into the contract fields."""
    if req.tools:
        options.Tools = json.dumps([t.model_dump(exclude_none=True) for t in req.tools])
    if req.tool_choice is not None:
        choice = req.tool_choice if isinstance(req.tool_choice, str) else req.tool_choice.model_dump(exclude_none=True)
        options.ToolChoice = json.dumps(choice)
    if req.parallel_tool_calls is not None:
        options.Metadata["parallel_tool_calls"] = "true" if req.parallel_tool_calls else "false"
    schema = req.response_format.schema_to_enforce() if req.response_format else None
    if schema is not None:
        options.Metadata["json_schema"] = json.dumps(schema)
    if req.logprobs:
        options.Logprobs = 1
        options.TopLogprobs = req.top_logprobs or 0


def chat_options(req: ChatCompletionRequest, config: ModelConfig) -> backend_pb2.PredictOptions:
    options = predict_options(req, config, req.token_limit)
    tool_fields(req, options)
    messages = [message_dict(m) for m in req.messages]
    if config.system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    try:  # checked here, so a bad tool choice is a 400 before any backend sees it
        prepared = plan(options.Tools, options.ToolChoice, options.Metadata, messages)
    except PlanError as exc:
        raise BadRequest(str(exc), param="tool_choice" if "tool_choice" in str(exc) else "tools") from None
    template = config.template
    if template.use_tokenizer_template:
        options.UseTokenizerTemplate = True
        options.Messages.extend(proto_message(m) for m in messages)
        return options
    # the kernel renders the prompt: tools and tool history go in as text (see backend_chat)
    rendered = plain_messages(prepared.messages or messages)
    if template.chat:
        options.Prompt = render_chat(template.chat, state().settings.models_path, rendered, config.system_prompt)
    else:
        options.Prompt = plain_chat_prompt(rendered)
    return options


def collect(reply: backend_pb2.Reply) -> tuple[str, list[dict[str, Any]]]:
    """The reply's text and tool calls (``chat_deltas`` when the backend filled them)."""
    if not reply.chat_deltas:
        return reply.message.decode("utf-8", "replace"), []
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for delta in reply.chat_deltas:
        text.append(delta.content)
        for piece in delta.tool_calls:
            call = calls.setdefault(piece.index, {"id": "", "type": "function",
                                                  "function": {"name": "", "arguments": ""}})
            call["id"] = call["id"] or piece.id
            call["function"]["name"] = call["function"]["name"] or piece.name
            call["function"]["arguments"] += piece.arguments
    return "".join(text), [calls[i] for i in sorted(calls)]


def chat_choice(reply: backend_pb2.Reply, limit: int, want_logprobs: bool) -> dict[str, Any]:
    """The one choice of a non-streamed chat reply."""
    text, calls = collect(reply)
    reason = finish_reason(reply.tokens, limit)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message = {"role": "assistant", "content": text or None, "tool_calls": calls}
        reason = "tool_calls" if reason == "stop" else reason
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reason}
    if want_logprobs:
        choice["logprobs"] = orjson.loads(reply.logprobs) if reply.logprobs else None
    return choice


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
