"""Hooks of the Ray plugin.

Without a Ray address (``local-ai run --ray-address`` or ``LOCALAI_RAY_ADDRESS``) every hook
returns at once and ``ray`` is never imported; backends then run as local subprocesses.
"""

from __future__ import annotations

import os
from typing import Any

import click

from localai import hookimpl
from localai.errors import LoadError

from .options import ADDRESS_ENV, RayOptions, fingerprint, ray_address


def _remember_address(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ[ADDRESS_ENV] = value


@hookimpl
def localai_register_commands(cli: click.Group) -> None:
    """``local-ai run --ray-address ADDR`` and the ``local-ai ray`` commands."""
    run = cli.commands.get("run")
    if run is not None and not any(param.name == "ray_address" for param in run.params):
        run.params.append(click.Option(
            ["--ray-address"], envvar=ADDRESS_ENV, expose_value=False, callback=_remember_address,
            help="Place backends on the Ray cluster at this address (HOST:PORT of the head, or auto).",
        ))
    if "ray" not in cli.commands:
        from .commands import ray_group

        cli.add_command(ray_group)


def _shared_files(spec: Any, config: Any, model_file: str) -> list[str]:
    """Paths the node must see: the ones that exist here (model file, executable, working dir).

    A model reference that is not a file here (a hub id, say) is not checked.
    """
    candidates = [model_file, spec.argv[0] if spec.argv else "", spec.cwd or ""]
    return [path for path in candidates if path and os.path.isabs(path) and os.path.exists(path)]


@hookimpl(tryfirst=True)
def localai_launch_backend(spec, addr, settings, model, config):
    """Place ``spec``'s process on the Ray cluster (None when Ray is off or the model opts out)."""
    address = ray_address()
    if not address or not spec.managed:
        return None
    options = RayOptions.from_config(config)
    if not options.enabled:
        return None
    try:
        model_file = config.model_file(settings.models_path) if config is not None else ""
    except FileNotFoundError as exc:
        raise LoadError(f"cannot load model {model!r}: {exc}") from None
    from .cluster import RayBackend

    return RayBackend(
        address=address,
        model=model,
        name=f"{model}:{fingerprint(spec, config, model_file)}",
        argv=list(spec.argv),
        env=dict(spec.env),
        cwd=spec.cwd,
        files=_shared_files(spec, config, model_file),
        options=options,
        load_timeout=settings.load_timeout,
    )


@hookimpl
def localai_startup(app: Any) -> Any:
    """Join the cluster when the server starts, so a wrong address fails at once."""
    address = ray_address()
    if not address:
        return None
    import asyncio

    from .cluster import connect

    return asyncio.to_thread(connect, address)
