"""PredictOptions → the OpenAI-style request body llama.cpp's server engine takes, with tools,
tool choice and the reply schema (see :mod:`localai.backend_chat`) turned into messages and a
grammar."""

from __future__ import annotations

import functools
import json
from typing import Any

from localai.backend_chat import Plan, PlanError, plan
from localai.backend_server import BadRequest, chat_message, template_kwargs


def request_body(req: Any) -> tuple[bool, dict[str, Any]]:
    """(is chat, the OpenAI-style request body llama.cpp's server takes) for PredictOptions."""
    body: dict[str, Any] = {
        "temperature": req.Temperature,
        "min_p": req.MinP,
        "frequency_penalty": req.FrequencyPenalty,
        "presence_penalty": req.PresencePenalty,
    }
    if req.Tokens > 0:
        body["max_tokens"] = req.Tokens
    if req.TopP > 0:
        body["top_p"] = req.TopP
    if req.TopK > 0:
        body["top_k"] = req.TopK
    if req.TypicalP > 0:
        body["typical_p"] = req.TypicalP
    if req.Penalty > 0:
        body["repeat_penalty"] = req.Penalty
    if req.Seed:
        body["seed"] = req.Seed & 0xFFFFFFFF
    if req.StopPrompts:
        body["stop"] = [s for s in req.StopPrompts if s]
    if req.IgnoreEOS:
        body["ignore_eos"] = True
    if req.Grammar:
        body["grammar"] = req.Grammar
    if req.Mirostat:
        body.update(mirostat=req.Mirostat, mirostat_tau=req.MirostatTAU or 5.0, mirostat_eta=req.MirostatETA or 0.1)
    if req.UseTokenizerTemplate and req.Messages:
        body["messages"] = [chat_message(m) for m in req.Messages]
        kwargs = template_kwargs(req.Metadata)
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        return True, body
    body["prompt"] = req.Prompt
    return False, body


# compact JSON (one space after ":" and ","): the wheel's grammar engine (llguidance) otherwise
# allows any whitespace between tokens, where a small model can loop until max_tokens
COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


@functools.lru_cache(maxsize=64)
def schema_grammar(schema_json: str) -> str:
    """llama.cpp's own JSON schema → grammar conversion (the one its server uses)."""
    import xllamacpp

    return xllamacpp.json_schema_to_grammar({**json.loads(schema_json), "x-guidance": COMPACT})


def prepare(req: Any) -> tuple[bool, dict[str, Any], Plan]:
    """The request body with tools, tool choice and the reply schema applied (see backend_chat)."""
    chat, body = request_body(req)
    try:
        prepared = plan(req.Tools, req.ToolChoice, req.Metadata, body.get("messages"))
    except PlanError as exc:
        raise BadRequest(str(exc)) from None
    if prepared.messages is not None:
        body["messages"] = prepared.messages
    if prepared.schema is not None:
        if req.Grammar:
            raise BadRequest("a grammar cannot be combined with a response schema or a forced tool call")
        try:
            body["grammar"] = schema_grammar(json.dumps(prepared.schema, sort_keys=True))
        except Exception as exc:  # noqa: BLE001 - llama.cpp refuses the schema
            raise BadRequest(f"the JSON schema cannot be turned into a grammar: {exc}") from None
    if req.Logprobs:
        if chat:
            body["logprobs"] = True
            body["top_logprobs"] = req.TopLogprobs
        else:
            body["logprobs"] = max(1, req.TopLogprobs)
    return chat, body, prepared
