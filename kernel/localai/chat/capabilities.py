"""Per-model capabilities: which request features a model's backend can honour.

A backend declares them in ``BackendSpec.features``; a model config may state its own with
``capabilities: [...]`` (an installed OCI backend or an external one declares nothing, so its
models get 400 for these features unless their config lists them). An OpenAI-compatible HTTP
upstream gets every request unchanged, so it is reported as capable of everything. A request
that asks for a feature its model lacks is a 400 naming the parameter and the model, before
anything reaches a backend: never a 200 that quietly ignores it.
"""

from __future__ import annotations

from typing import Any

from ..backends.http_upstream import is_http_model
from ..errors import BadRequest
from ..models.config import ModelConfig

# feature -> what it covers (documented on /v1/models and in the README)
FEATURES = {
    "tools": "tools, tool_choice, parallel_tool_calls, and tool calls / tool results in messages",
    "json_schema": "response_format json_object and json_schema, enforced by a grammar",
    "grammar": "a GBNF grammar in the request's grammar field",
    "logprobs": "logprobs and top_logprobs",
    "n": "n > 1 choices",
    "images": "image_url content parts in messages",
}
MEDIA_PARTS = {"image_url": "images", "input_image": "images"}


def model_capabilities(host: Any, config: ModelConfig) -> list[str]:
    """The model's capabilities: its config's ``capabilities``, else its backend's features."""
    if is_http_model(config):
        return sorted(FEATURES)
    declared = (config.model_extra or {}).get("capabilities")
    if isinstance(declared, list):
        return sorted(str(item) for item in declared)
    spec = host.backend(config.backend_name)
    return sorted(spec.features) if spec else []


def chat_features(req: Any) -> dict[str, str]:
    """The features a chat request asks for: feature -> the parameter that asks."""
    wanted: dict[str, str] = {}
    if req.tools and req.tool_choice != "none":
        wanted["tools"] = "tools"
    elif req.tool_choice not in (None, "none", "auto"):
        wanted["tools"] = "tool_choice"
    for message in req.messages:
        if message.tool_calls or message.role in ("tool", "function"):
            wanted.setdefault("tools", "messages")
        for part in message.part_types():
            if part in MEDIA_PARTS:
                wanted[MEDIA_PARTS[part]] = "messages"
    if req.response_format is not None and req.response_format.type != "text":
        wanted["json_schema"] = "response_format"
    if req.logprobs or req.top_logprobs:
        wanted["logprobs"] = "logprobs" if req.logprobs else "top_logprobs"
    return {**wanted, **common_features(req)}


def completion_features(req: Any) -> dict[str, str]:
    wanted = common_features(req)
    if req.logprobs:
        wanted["logprobs"] = "logprobs"
    return wanted


def common_features(req: Any) -> dict[str, str]:
    wanted: dict[str, str] = {}
    if req.n > 1:
        wanted["n"] = "n"
    if req.grammar:
        wanted["grammar"] = "grammar"
    return wanted


def require_features(host: Any, config: ModelConfig, wanted: dict[str, str], body: dict[str, Any]) -> None:
    """400 for the first asked-for feature the model cannot honour (and for deprecated fields)."""
    for legacy, replacement in (("functions", "tools"), ("function_call", "tool_choice")):
        if body.get(legacy) is not None:
            raise BadRequest(f"{legacy} is deprecated and not supported; use {replacement}", param=legacy,
                             code="unsupported_parameter")
    if not wanted:
        return
    have = set(model_capabilities(host, config))
    for feature, param in wanted.items():
        if feature not in have:
            raise BadRequest(
                f"model {config.name!r} (backend {config.backend_name or 'none'!r}) cannot honour {param!r}: "
                f"it lacks the {feature!r} capability ({FEATURES[feature]}); "
                f"its capabilities: {', '.join(sorted(have)) or 'none'}",
                param=param,
                code="unsupported_parameter",
            )
