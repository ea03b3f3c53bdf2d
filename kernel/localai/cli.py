"""The ``local-ai`` command line (click), with LocalAI's flag and environment names."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from . import __version__
from .cli_options import common_options, settings_from
from .cli_plugins import plugin_host, plugins
from .errors import ConfigError
from .settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="local-ai")
def cli():
    """LocalAI for Python: an OpenAI-compatible server for models on your own machine."""


cli.add_command(plugins)


@cli.command()
@click.option("--address", envvar=["LOCALAI_ADDRESS", "ADDRESS"], help="Bind address HOST:PORT [127.0.0.1:8080].")
@click.option("--ollama-address", envvar="LOCALAI_OLLAMA_ADDRESS",
              help="Also serve Ollama's API (only it) on this HOST:PORT, e.g. 127.0.0.1:11434.")
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
@click.option("--backend-galleries", envvar=["LOCALAI_BACKEND_GALLERIES", "BACKEND_GALLERIES"],
              help='JSON list of {"name", "url"} backend galleries.')
@click.option("--external-backends", envvar="LOCALAI_EXTERNAL_BACKENDS",
              help="Backends (gallery names or URIs) to install at start-up, comma-separated.")
@click.option("--api-keys", envvar=["LOCALAI_API_KEY", "API_KEY"],
              help="Comma-separated API keys; when set, every route but health checks and the UI needs one.")
@click.option("--allow-insecure-bind", envvar="LOCALAI_ALLOW_INSECURE_BIND", is_flag=True, default=None,
              help="Allow a non-loopback --address without API keys.")
@click.option("--cors-allow-origins", help="Comma-separated origins (https://app.example) whose web pages may call "
              "the API, or '*' [none; env LOCALAI_CORS_ALLOW_ORIGINS, CORS_ALLOW_ORIGINS, CORS].")
@click.option("--allowed-hosts", help="Comma-separated Host names served besides loopback ones (.example.com "
              "for a domain and its subdomains) [env LOCALAI_ALLOWED_HOSTS].")
@click.option("--allow-local-urls", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="A directory whose files API requests may name as file:// URLs or paths (repeatable) "
              "[none; env LOCALAI_ALLOW_LOCAL_URLS].")
@click.option("--allow-backend-uris", is_flag=True, default=None,
              help="Let /backends/apply install from any URI, not only from the backend galleries "
              "[env LOCALAI_ALLOW_BACKEND_URIS].")
@click.option("--allow-private-urls", is_flag=True, default=None,
              help="Let API requests make the server fetch from loopback, private and link-local addresses "
              "(/models/apply, /api/pull) [env LOCALAI_ALLOW_PRIVATE_URLS].")
@click.option("--kv-cache-dir", envvar="LOCALAI_KV_CACHE_DIR", type=click.Path(path_type=Path),
              help="Where llama.cpp backends save prompt KV across unloads [<models>/.kv-cache].")
@click.option("--kv-cache-size", envvar="LOCALAI_KV_CACHE_SIZE",
              help="How much the KV cache dir may hold, e.g. 4GB; 0 turns it off [4GB].")
@click.option("--model-fallback", envvar="LOCALAI_MODEL_FALLBACK", metavar="NAME",
              help="Answer requests for unknown model names (claude-*, gpt-*) with model NAME [off: a 404].")
@click.argument("models_to_run", metavar="[MODEL|URI]...", nargs=-1)
def run(models_to_run, **options):
    """Start the API server (installing the named models first when missing)."""
    if options.get("log_level") == "warn":
        options["log_level"] = "warning"
    settings = settings_from(**options)
    if models_to_run:
        gallery = model_gallery(models_path=settings.models_path, backends_path=settings.backends_path,
                                external_grpc_backends=",".join(settings.external_grpc_backends))
        for item in models_to_run:
            if gallery.registry.get(item) is None:
                installed = run_gallery_action(lambda bar: gallery.install(item, progress=bar, local_roots=None),
                                               item)
                click.echo(f"installed model {installed}", err=True)
    from .server import run as run_server, setup_logging

    setup_logging(settings.log_level)  # the server logs the plugins that failed to load
    host = plugin_host(settings)
    try:
        run_server(settings, host)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def models():
    """List and install models (configs, galleries, URIs)."""


def model_gallery(**options):
    """A ModelGallery (with the plugin host and backend gallery) for the CLI."""
    from .gallery.models import ModelGallery
    from .gallery.service import BackendGallery
    from .models.registry import ModelRegistry

    settings = settings_from(**options)
    host = plugin_host(settings, lenient=True)
    registry = ModelRegistry(settings.models_path, host.model_configs(), data_path=settings.data_path)
    return ModelGallery(settings, host, BackendGallery(settings, host), registry)


@models.command("list")
@common_options
@click.option("--available", is_flag=True, help="List the model galleries' entries instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(available: bool, as_json: bool, **options):
    """List the models the server would serve (and broken configs), or the galleries' models."""
    gallery = model_gallery(**options)
    if available:
        rows = gallery.available()
        for loaded in gallery.galleries.load():
            if loaded.error:
                click.echo(f"gallery {loaded.source.name} is unavailable: {loaded.error}", err=True)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            mark = "*" if row["installed"] else "-"
            click.echo(f" {mark} {row['gallery']}@{row['name']}  {row['description']}".rstrip())
        return
    registry = gallery.registry
    rows = [{"name": c.name, "backend": c.backend_name, "source": c.source} for c in registry.all()]
    broken = [{"source": b.source, "error": b.error} for b in registry.broken]
    if as_json:
        click.echo(json.dumps({"models": rows, "broken": broken}, indent=2))
        return
    if not rows:
        click.echo(f"No models. Add YAML configs to {gallery.settings.models_path} or install a model plugin.")
    for row in rows:
        click.echo(f"{row['name']}\t{row['backend'] or '-'}\t{row['source']}")
    for item in broken:
        click.echo(f"BROKEN {item['source']}: {item['error']}", err=True)


@models.command("install")
@common_options
@click.argument("models_to_install", metavar="NAME|URI...", nargs=-1, required=True)
@click.option("--name", help="Install under this name (one model only).")
@click.option("--force", is_flag=True, help="Reinstall a model an earlier install made (never an operator's YAML).")
def models_install(models_to_install, name: str | None, force: bool, **options):
    """Install models from the galleries (name or gallery@name) or from a URI."""
    gallery = model_gallery(**options)
    if name and len(models_to_install) > 1:
        raise click.UsageError("--name works with one model only")
    for item in models_to_install:
        installed = run_gallery_action(
            lambda bar: gallery.install(item, name=name, progress=bar, local_roots=None, force=force), item)
        click.echo(f"installed model {installed}")


def gallery_options(func):
    func = click.option("--backend-galleries", envvar=["LOCALAI_BACKEND_GALLERIES", "BACKEND_GALLERIES"],
                        help='JSON list of {"name", "url"} backend galleries.')(func)
    return click.option("--backends-path", envvar=["LOCALAI_BACKENDS_PATH", "BACKENDS_PATH"],
                        type=click.Path(path_type=Path), help="Directory of installed backends [./backends].")(func)


def backend_gallery(**options):
    from .gallery.service import BackendGallery

    settings = settings_from(**options)
    return BackendGallery(settings, plugin_host(settings, lenient=True))


class ProgressBar:
    """A tqdm download bar fed by (done, total) callbacks."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=self.label, leave=False)
        self.bar.total = total or self.bar.total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_gallery_action(action, label: str):
    """Run a blocking gallery action with a progress bar; API errors become CLI errors."""
    from .errors import APIError

    bar = ProgressBar(label)
    try:
        return action(bar)
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        bar.close()


@cli.group()
def backends():
    """Install, list, upgrade and package backends (gallery, OCI images, directories)."""


@backends.command("list")
@gallery_options
@click.option("--available", is_flag=True, help="List the galleries' backends, not only installed ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backends_list(available: bool, as_json: bool, **options):
    """List installed backends (or, with --available, every gallery entry)."""
    service = backend_gallery(**options)
    if available:
        rows = service.available()
        for gallery in service.galleries.load():
            if gallery.error:
                click.echo(f"gallery {gallery.source.name} is unavailable: {gallery.error}", err=True)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            mark = "*" if row["installed"] else "-"
            kind = " (meta)" if row["is_meta"] else ""
            click.echo(f" {mark} {row['gallery']}@{row['name']}{kind}  {row['description']}".rstrip())
        return
    rows = [b.public() for b in service.store.installed()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"No backends installed in {service.settings.backends_path}.")
    for row in rows:
        meta = row["Metadata"]
        extra = f" -> {meta['meta_backend_for']}" if row["IsMeta"] else f"  {meta.get('uri', '')}"
        alias = f" (alias {meta['alias']})" if meta.get("alias") else ""
        click.echo(f" * {row['Name']}{alias}{extra}".rstrip())


@backends.command("install")
@gallery_options
@click.argument("backend")
@click.option("--name", help="Name to install under (required for OCI images).")
@click.option("--alias", default="", help="Alias a model config's backend: may use.")
@click.option("--force", is_flag=True, help="Reinstall even if installed.")
def backends_install(backend: str, name: str | None, alias: str, force: bool, **options):
    """Install BACKEND: a gallery name (or gallery@name), an OCI image, ocifile://, a dir or a URL."""
    service = backend_gallery(**options)
    installed = run_gallery_action(
        lambda bar: service.install(backend, name=name, alias=alias, force=force, progress=bar), backend)
    click.echo(f"installed {installed.name} in {installed.path}")


@backends.command("uninstall")
@gallery_options
@click.argument("names", nargs=-1, required=True)
def backends_uninstall(names, **options):
    """Remove installed backends (a meta backend takes its concrete build along)."""
    service = backend_gallery(**options)
    for name in names:
        removed = run_gallery_action(lambda bar: service.store.delete(name), name)
        click.echo(f"removed {', '.join(removed)}")


@backends.command("upgrade")
@gallery_options
@click.argument("names", nargs=-1)
def backends_upgrade(names, **options):
    """Upgrade the named backends, or every backend whose gallery image changed."""
    service = backend_gallery(**options)
    targets = list(names) or list(service.store.upgrades(service.galleries))
    if not targets:
        click.echo("All backends are up to date.")
    for name in targets:
        backend = run_gallery_action(
            lambda bar: service.store.upgrade(name, service.galleries, progress=bar), name)
        click.echo(f"upgraded {backend.name} ({backend.metadata.get('digest') or backend.metadata.get('version')})")


@backends.command("package")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tag", help="Image reference, e.g. 127.0.0.1:5000/my-backend:1.0.")
@click.option("--push", is_flag=True, help="Push the image to the registry in --tag.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an OCI layout tarball (install it with ocifile://PATH).")
def backends_package(directory: Path, tag: str | None, push: bool, output: Path | None):
    """Build a standard OCI image from a backend DIRECTORY (run.sh at its top), without Docker."""
    from .gallery import oci

    if not push and output is None:
        raise click.UsageError("give --push (with --tag) and/or --output")
    if push and not tag:
        raise click.UsageError("--push needs --tag")
    try:
        if output is not None:
            digest = oci.write_ocifile(directory, output, (oci.Reference.parse(tag).tag if tag else None) or "latest")
            click.echo(f"wrote {output} ({digest})")
        if push:
            digest = oci.push_image(directory, tag, Settings.from_env().insecure_registries)
            click.echo(f"pushed {tag}@{digest}")
    except oci.OCIError as exc:
        raise click.ClickException(str(exc)) from None


def load_plugins_once():
    """Load the plugins for this process and let them add commands (``localai_register_commands``);
    never fatal: the commands that use plugins report what failed. The PluginHost, or None."""
    from .host import PluginHost

    quiet = [logging.getLogger(name) for name in ("localai.plugins", "localai.host")]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        host = PluginHost(Settings.from_env(strict_plugins=False), lenient=True)
        host.register_commands(cli)
        return host
    except Exception:  # a plugin's command must not break the CLI
        return None
    finally:
        for logger in quiet:
            logger.setLevel(logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    host = load_plugins_once()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="local-ai", obj=host)
