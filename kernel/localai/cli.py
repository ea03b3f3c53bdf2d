"""The ``local-ai`` command line (click), with LocalAI's flag and environment names."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError
from .settings import Settings, parse_duration, split_list


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="local-ai")
def cli():
    """LocalAI for Python: an OpenAI-compatible server for models on your own machine."""


def common_options(func):
    """Options every command that reads models or plugins needs."""
    func = click.option("--models-path", envvar=["LOCALAI_MODELS_PATH", "MODELS_PATH"], type=click.Path(path_type=Path),
                        help="Directory of model YAML configs and files [./models].")(func)
    func = click.option("--backends-path", envvar=["LOCALAI_BACKENDS_PATH", "BACKENDS_PATH"],
                        type=click.Path(path_type=Path), help="Directory of installed backends [./backends].")(func)
    func = click.option("--external-grpc-backends", envvar="LOCALAI_EXTERNAL_GRPC_BACKENDS",
                        help="Comma-separated NAME:HOST:PORT or NAME:/path/to/run.sh entries.")(func)
    return func


def settings_from(**options) -> Settings:
    external = options.pop("external_grpc_backends", None)
    idle = options.pop("watchdog_idle_timeout", None)
    overrides = {key: value for key, value in options.items() if value is not None}
    if external is not None:
        overrides["external_grpc_backends"] = split_list(external)
    if idle is not None:
        overrides["idle_timeout"] = parse_duration(idle)
    return Settings.from_env(**overrides)


@cli.command()
@click.option("--address", envvar=["LOCALAI_ADDRESS", "ADDRESS"], help="Bind address HOST:PORT [127.0.0.1:8080].")
@common_options
@click.option("--threads", envvar="LOCALAI_THREADS", type=int, help="Threads per backend [all cores].")
@click.option("--context-size", envvar="LOCALAI_CONTEXT_SIZE", type=int, help="Default context size.")
@click.option("--log-level", envvar="LOCALAI_LOG_LEVEL",
              type=click.Choice(["error", "warn", "warning", "info", "debug"], case_sensitive=False),
              help="Log level [info].")
@click.option("--single-active-backend", envvar="LOCALAI_SINGLE_ACTIVE_BACKEND", is_flag=True, default=None,
              help="Keep at most one model loaded.")
@click.option("--max-active-backends", envvar="LOCALAI_MAX_ACTIVE_BACKENDS", type=int,
              help="Keep at most N models loaded; the least recently used is unloaded [0 = no limit].")
@click.option("--watchdog-idle-timeout", envvar="LOCALAI_WATCHDOG_IDLE_TIMEOUT",
              help="Unload models idle for this long, e.g. 15m (enables the idle watchdog).")
def run(**options):
    """Start the API server."""
    if options.get("log_level") == "warn":
        options["log_level"] = "warning"
    settings = settings_from(**options)
    from .server import run as run_server

    try:
        run_server(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def models():
    """Inspect model configs."""


@models.command("list")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json: bool, **options):
    """List the models the server would serve, and broken configs."""
    from .host import PluginHost
    from .models.registry import ModelRegistry

    settings = settings_from(**options)
    try:
        host = PluginHost(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    registry = ModelRegistry(settings.models_path, host.model_configs())
    rows = [{"name": c.name, "backend": c.backend_name, "source": c.source} for c in registry.all()]
    broken = [{"source": b.source, "error": b.error} for b in registry.broken]
    if as_json:
        click.echo(json.dumps({"models": rows, "broken": broken}, indent=2))
        return
    if not rows:
        click.echo(f"No models. Add YAML configs to {settings.models_path} or install a model plugin.")
    for row in rows:
        click.echo(f"{row['name']}\t{row['backend'] or '-'}\t{row['source']}")
    for item in broken:
        click.echo(f"BROKEN {item['source']}: {item['error']}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def plugins(as_json: bool, **options):
    """List plugins: name, version, hooks, backends and load errors."""
    from .host import PluginHost

    try:
        host = PluginHost(settings_from(**options), lenient=True)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [info.as_dict() for info in host.plugins.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        label = f"{row['name']} {row['version']}".strip() + (" (built-in)" if row["builtin"] else "")
        click.echo(label)
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        click.echo(f"  backends: {', '.join(row['backends']) or '-'}")
        if row["error"]:
            click.echo(f"  BROKEN: {row['error']}")


def _register_plugin_commands() -> None:
    """Let plugins add commands (``localai_register_commands``); never fatal."""
    from .plugins import load_plugins, new_plugin_manager

    logging.getLogger("localai.plugins").setLevel(logging.CRITICAL)
    try:
        pm = new_plugin_manager()
        load_plugins(pm, Settings.from_env(strict_plugins=False))
        pm.hook.localai_register_commands(cli=cli)
    except Exception:  # a plugin's command must not break the CLI
        pass
    finally:
        logging.getLogger("localai.plugins").setLevel(logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    _register_plugin_commands()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="local-ai")
