"""Which model serves a request: shared by chat, completions, embeddings, audio, images and rerank.

``app_state`` is the app's ``AppState`` (the caller passes it: this layer knows no request context).
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..models.config import ModelConfig


def model_usecases(app_state: Any, config: ModelConfig) -> set[str]:
    """The model's usecases: ``known_usecases``, else those of its backend."""
    if config.known_usecases is not None:
        return set(config.known_usecases)
    spec = app_state.host.backend(config.backend_name)
    return set(spec.usecases) if spec else set()


def require_usecase(app_state: Any, config: ModelConfig, usecase: str) -> None:
    """A model that cannot do this endpoint's job is a 400, not a crash in its backend."""
    usecases = model_usecases(app_state, config)
    if usecases and usecase not in usecases:
        raise BadRequest(
            f"model {config.name!r} does not support {usecase} (it supports: {', '.join(sorted(usecases))})",
            param="model",
            code="unsupported_model",
        )


def pick_model(app_state: Any, requested: str | None, usecase: str) -> str:
    """The requested model, or (LocalAI's behaviour) the first model that has ``usecase``."""
    if requested:
        return requested
    for config in app_state.registry.all():
        if usecase in model_usecases(app_state, config):
            return config.name
    raise BadRequest(f"no model given and no installed model supports {usecase}", param="model")


def untagged(registry: Any, name: str) -> str:
    """An Ollama-style ``name:latest`` (or ``name:tag`` of an untagged model) as the name we know."""
    if registry.get(name) is None and ":" in name:
        base, _, tag = name.rpartition(":")
        if tag == "latest" or registry.get(base) is not None:
            return base
    return name


def find_model(registry: Any, name: str) -> ModelConfig | None:
    """The config named ``name`` (an alias, the fallback model; see ``ModelRegistry.resolve``) or, tag
    stripped (see :func:`untagged`), None when there is none."""
    return registry.resolve(untagged(registry, name))


def model_for(app_state: Any, requested: str | None, usecase: str, *, strip_tag: bool = False) -> ModelConfig:
    """The config of the requested (or default) model, checked for ``usecase``. With ``strip_tag``
    (Ollama's names) ``name:latest`` resolves to ``name``, and an unknown name is a 404."""
    if requested and strip_tag:
        requested = untagged(app_state.registry, requested)
    config = app_state.manager.config(pick_model(app_state, requested, usecase))
    require_usecase(app_state, config, usecase)
    return config
