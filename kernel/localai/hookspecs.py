"""The plugin API: hook specifications of the ``localai`` pluggy project.

Plugins are modules (or objects) with functions decorated by ``localai.hookimpl`` and are
found through the ``localai`` entry-point group. Hooks register things; the objects they
return do the work. No hook is called per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click
    from quart import Quart

    from .backend_spec import BackendHandle, BackendSpec
    from .models.config import ModelConfig
    from .settings import Settings

hookspec = pluggy.HookspecMarker("localai")


@hookspec
def localai_backends(settings: "Settings") -> Iterable["BackendSpec"]:
    """Return the backends this plugin provides (discovery).

    Each item is a :class:`localai.backend_spec.BackendSpec`: a name, the usecases it
    serves and the argv that starts its gRPC server (``{addr}`` is substituted). Two
    plugins returning the same backend name is a configuration error.
    """


@hookspec(firstresult=True)
def localai_launch_backend(
    spec: "BackendSpec", addr: str, settings: "Settings", model: str, config: "ModelConfig", env: dict[str, str]
) -> "BackendHandle | None":
    """Start the process for ``spec`` serving gRPC on ``addr`` and return its handle.

    The first non-None result wins. The built-in implementation (``trylast``) starts a local
    subprocess; a plugin can place the backend elsewhere (another host, a cluster) by
    returning any object that satisfies :class:`localai.backend_spec.BackendHandle`,
    serving on an address of its own choosing. ``config`` is the model's
    :class:`~localai.models.config.ModelConfig` (its extra YAML keys included, e.g. placement
    hints); implementations that do not declare the argument do not receive it.

    ``env`` is what the kernel tells the backend, to be added to its process environment (never
    its argv, which ``ps`` shows): the server's settings, ``LOCALAI_GRPC_AUTH_TOKEN`` (a fresh
    secret the kernel sends as ``authorization: Bearer`` on every call; backends built on
    ``localai.backend_server`` refuse calls without it) and ``LOCALAI_BACKEND_OUTPUT_DIR``. A
    handle whose backend was started with another token (one shared with other kernels) names it
    as ``token``.
    """


@hookspec
def localai_model_configs(settings: "Settings") -> Iterable[dict[str, Any]]:
    """Return model configs this plugin ships, as LocalAI-style YAML mappings.

    Use it for default models whose files come from an installed package. Configs in the
    models directory win over plugin configs of the same name.
    """


@hookspec
def localai_gallery_sources(settings: "Settings") -> Iterable[Any]:
    """Return backend and model gallery sources (``{"name", "url"}`` mappings)."""


@hookspec
def localai_before_inference(request: dict[str, Any]) -> None:
    """Observe or adjust one inference request (its parsed body) before it is sent.

    Called once per request, never per token, and only when some plugin implements it.
    """


@hookspec
def localai_after_inference(request: dict[str, Any], result: dict[str, Any]) -> None:
    """Observe one finished inference request and its (non-streamed or summary) result."""


@hookspec
def localai_register_routes(app: "Quart") -> None:
    """Register extra HTTP routes or blueprints on the Quart app."""


@hookspec
def localai_register_commands(cli: "click.Group") -> None:
    """Add commands to the ``local-ai`` CLI group."""


@hookspec
def localai_startup(app: "Quart") -> Any:
    """Called once when the server starts; may return an awaitable."""


@hookspec
def localai_shutdown(app: "Quart") -> Any:
    """Called once when the server stops; may return an awaitable."""
