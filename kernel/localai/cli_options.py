"""Options and settings shared by the ``local-ai`` commands."""

from __future__ import annotations

from pathlib import Path

import click

from .settings import Settings, parse_duration, parse_size, split_keys, split_list


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
    preinstall = options.pop("external_backends", None)
    if preinstall is not None:
        options["external_backends"] = split_list(preinstall)
    idle = options.pop("watchdog_idle_timeout", None)
    api_keys = options.pop("api_keys", None)
    if api_keys is not None:
        options["api_keys"] = split_keys(api_keys)
    if options.get("kv_cache_size") is not None:
        options["kv_cache_size"] = parse_size(options["kv_cache_size"])
    for name in ("cors_allow_origins", "allowed_hosts"):
        if options.get(name) is not None:
            options[name] = split_list(options[name])
    if options.get("allow_local_urls"):
        options["allow_local_urls"] = [Path(p) for p in options["allow_local_urls"]]
    else:
        options.pop("allow_local_urls", None)
    overrides = {key: value for key, value in options.items() if value is not None}
    if external is not None:
        overrides["external_grpc_backends"] = split_list(external)
    if idle is not None:
        overrides["idle_timeout"] = parse_duration(idle)
    return Settings.from_env(**overrides)
