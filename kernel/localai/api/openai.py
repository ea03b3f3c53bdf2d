"""The OpenAI-compatible model list and embeddings routes (chat completions and completions are
the ``openai_chat`` dialect, :mod:`localai.dialects.openai_chat`).

Every route answers with and without the ``/v1`` prefix, as LocalAI does.
"""

from __future__ import annotations

import array
import base64

from quart import Blueprint

from ..backends.http_upstream import is_http_model
from ..backends.options import context_size
from ..chat.calls import embed, vector_of
from ..chat.capabilities import model_capabilities
from ..chat.models import model_usecases
from ..chat.start import prepare
from ..errors import BadRequest, NotFound
from ..models.config import ModelConfig
from .common import json_body, json_response, state, versioned
from .forward import forward_json
from .schemas import EmbeddingRequest

bp = Blueprint("openai", __name__)
route = versioned(bp)


# -- models -----------------------------------------------------------------------------


def model_info(config: ModelConfig) -> dict:
    """A model as OpenAI lists it, with LocalAI's backend and usecases and its capabilities."""
    return {"id": config.name, "object": "model", "created": int(state().started_at), "owned_by": "localai",
            "backend": config.backend_name, "usecases": sorted(model_usecases(state(), config)),
            "capabilities": model_capabilities(state().host, config), **context_fields(config)}


def context_fields(config: ModelConfig) -> dict:
    """The model's context length under the names clients read (OpenAI-style servers, vLLM, LM
    Studio); none when it is unknown here (the backend's default applies)."""
    tokens = context_size(config, state().settings)
    return {"context_length": tokens, "max_model_len": tokens, "max_context_length": tokens} if tokens else {}


@route("/models", methods=["GET"])
async def list_models():
    return json_response({"object": "list", "data": [model_info(c) for c in state().registry.all()]})


@route("/models/<path:model_id>", methods=["GET"])
async def retrieve_model(model_id: str):
    config = state().registry.get(model_id)
    if config is None:
        raise NotFound(f"The model {model_id!r} does not exist", param="model", code="model_not_found")
    return json_response(model_info(config))


# -- embeddings -------------------------------------------------------------------------


def encode_vector(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(array.array("f", values).tobytes()).decode("ascii")
    return values


@route("/embeddings", methods=["POST"])
async def embeddings():
    app_state = state()
    body = await json_body()
    req, config = prepare(app_state, body, EmbeddingRequest, "embeddings")
    if is_http_model(config):
        return await forward_json(config, "/embeddings", body)
    name = config.name
    data = []
    prompt_tokens = 0
    results = await embed(app_state.manager, name, req.inputs())
    for index, result in enumerate(results):
        values = vector_of(result)
        if req.dimensions is not None:
            if req.dimensions > len(values):
                raise BadRequest(f"dimensions must be at most {len(values)} for this model", param="dimensions")
            values = values[: req.dimensions]
        prompt_tokens += result.prompt_tokens
        data.append({"object": "embedding", "index": index, "embedding": encode_vector(values, req.encoding_format)})
    result = {"object": "list", "data": data, "model": name,
              "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
    app_state.host.after_inference(body, result)
    return json_response(result)
