"""Neutral request + model config -> ``PredictOptions``, in the contract fields LocalAI uses.

Filled: ``Messages`` (``tool_calls`` as JSON, ``tool_call_id``) or a rendered ``Prompt``,
``Tools`` / ``ToolChoice`` (JSON), ``Grammar``, ``Logprobs`` / ``TopLogprobs``,
``Metadata["json_schema"]`` and ``Metadata["parallel_tool_calls"]``. The tools plan
(:func:`localai.backend_chat.plan`) is made here once: in full when the kernel renders the
prompt, as a check only (a bad tool choice is a 400 before any backend) when the backend
templates the messages itself and plans there.
"""

from __future__ import annotations

import json
from typing import Any

from ..backend_chat import PlanError, plain_messages, plan
from ..errors import BadRequest
from ..models.config import ModelConfig
from ..models.templates import plain_chat_prompt, render_chat
from ..proto import backend_pb2
from .request import ChatRequest, Message, Sampling

DEFAULT_TEMPERATURE = 0.9
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40


def predict_options(sampling: Sampling, stops: list[str], limit: int | None, config: ModelConfig,
                    settings: Any) -> backend_pb2.PredictOptions:
    """PredictOptions from the request's settings, falling back to the model config's defaults."""
    params = config.parameters

    def pick(value, default, fallback):
        return value if value is not None else (default if default is not None else fallback)

    options = backend_pb2.PredictOptions(
        Temperature=pick(sampling.temperature, params.temperature, DEFAULT_TEMPERATURE),
        TopP=pick(sampling.top_p, params.top_p, DEFAULT_TOP_P),
        TopK=pick(sampling.top_k, params.top_k, DEFAULT_TOP_K),
        MinP=pick(sampling.min_p, params.min_p, 0.0),
        Tokens=pick(limit, params.max_tokens, 0),
        FrequencyPenalty=pick(sampling.frequency_penalty, params.frequency_penalty, 0.0),
        PresencePenalty=pick(sampling.presence_penalty, params.presence_penalty, 0.0),
        Penalty=pick(sampling.repeat_penalty, params.repeat_penalty, 0.0),
        StopPrompts=list(stops) + list(config.stopwords),
        Threads=config.threads or settings.threads or 0,
    )
    seed = pick(sampling.seed, params.seed, None)
    if seed is not None:
        options.Seed = seed
    if sampling.grammar:
        options.Grammar = sampling.grammar
    return options


def message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    return out


def proto_message(m: dict[str, Any]) -> backend_pb2.Message:
    message = backend_pb2.Message(role=m["role"], content=m["content"], name=m.get("name", ""),
                                  tool_call_id=m.get("tool_call_id", ""))
    if m.get("tool_calls"):
        message.tool_calls = json.dumps(m["tool_calls"])
    return message


def tool_fields(req: ChatRequest, options: backend_pb2.PredictOptions) -> None:
    """Tools, tool choice, parallel calls, response format and logprobs into the contract fields."""
    if req.tools:
        options.Tools = json.dumps(req.tools)
    if req.tool_choice is not None:
        options.ToolChoice = json.dumps(req.tool_choice)
    if req.parallel_tool_calls is not None:
        options.Metadata["parallel_tool_calls"] = "true" if req.parallel_tool_calls else "false"
    if req.json_schema is not None:
        options.Metadata["json_schema"] = json.dumps(req.json_schema)
    if req.logprobs:
        options.Logprobs = 1
        options.TopLogprobs = req.top_logprobs


def chat_options(req: ChatRequest, config: ModelConfig, settings: Any) -> backend_pb2.PredictOptions:
    """The backend request for a chat turn (CPU-bound: schemas, templates; run it off the loop)."""
    options = predict_options(req.sampling, req.stops, req.max_tokens, config, settings)
    tool_fields(req, options)
    messages = [message_dict(m) for m in req.messages]
    if config.system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    template = config.template
    try:  # the backend plans again on the messages it templates: here only the check
        prepared = plan(options.Tools, options.ToolChoice, options.Metadata,
                        None if template.use_tokenizer_template else messages)
    except PlanError as exc:
        raise BadRequest(str(exc), param="tool_choice" if "tool_choice" in str(exc) else "tools") from None
    if template.use_tokenizer_template:
        options.UseTokenizerTemplate = True
        options.Messages.extend(proto_message(m) for m in messages)
        return options
    # the kernel renders the prompt: tools and tool history go in as text (see backend_chat)
    rendered = plain_messages(prepared.messages or messages)
    if template.chat:
        options.Prompt = render_chat(template.chat, settings.models_path, rendered, config.system_prompt)
    else:
        options.Prompt = plain_chat_prompt(rendered)
    return options
