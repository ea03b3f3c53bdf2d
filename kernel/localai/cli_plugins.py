"""``local-ai plugins``: list the plugins this environment loads, install or uninstall them with pip."""

from __future__ import annotations

import json
import sys

import click

from .cli_options import common_options, settings_from
from .errors import ConfigError
from .settings import Settings


def plugin_host(settings: Settings, lenient: bool = False):
    """A PluginHost for ``settings`` over the plugins ``main`` loaded for this process (loaded here when
    the command runs without it, as in tests); a ConfigError is the command's error."""
    from .host import PluginHost

    context = click.get_current_context(silent=True)
    loaded = context.find_root().obj if context is not None else None
    try:
        if isinstance(loaded, PluginHost):
            return loaded.for_settings(settings, lenient)
        return PluginHost(settings, lenient=lenient)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def plugin_rows(**options) -> list[dict]:
    """The plugins this environment loads, as ``PluginInfo.as_dict()`` rows."""
    host = plugin_host(settings_from(**options), lenient=True)
    return [info.as_dict() for info in host.plugins.values()]


def echo_plugin(row: dict) -> None:
    label = f"{row['name']} {row['version']}".strip() + (" (built-in)" if row["builtin"] else "")
    if row["distribution"] and row["distribution"] != row["name"] and not row["builtin"]:
        label += f" [{row['distribution']}]"
    click.echo(label)
    click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
    click.echo(f"  backends: {', '.join(row['backends']) or '-'}")
    if row["error"]:
        click.echo(f"  BROKEN: {row['error']}")


def list_options(func):
    func = click.option("--requirements", is_flag=True,
                        help="Print dist==version pins of the non-built-in plugins (a requirements file).")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
    return common_options(func)


def list_plugins(as_json: bool, requirements: bool, **options) -> None:
    rows = plugin_rows(**options)
    if requirements:
        pins = {f"{r['distribution']}=={r['version']}" for r in rows if not r["builtin"] and r["distribution"]}
        for pin in sorted(pins, key=str.lower):
            click.echo(pin)
    elif as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            echo_plugin(row)


@click.group(invoke_without_command=True)
@list_options
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, requirements: bool, **options):
    """List plugins (name, version, hooks, backends, load errors); install or uninstall them with pip."""
    if ctx.invoked_subcommand is None:
        list_plugins(as_json, requirements, **options)


@plugins.command("list")
@list_options
def plugins_list(as_json: bool, requirements: bool, **options):
    """List plugins (what local-ai plugins does with no subcommand)."""
    list_plugins(as_json, requirements, **options)


KERNEL_DISTRIBUTION = "localai-kernel"


def canonical(name: str) -> str:
    """A distribution name normalized as in PEP 503."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def entry_point_versions() -> dict[str, str]:
    """``localai`` entry points visible to this interpreter, by name: distribution version."""
    from importlib.metadata import entry_points

    from .plugins import ENTRY_POINT_GROUP

    return {ep.name: ep.dist.version if ep.dist else "" for ep in entry_points(group=ENTRY_POINT_GROUP)}


def rows_after_pip() -> list[dict] | None:
    """All plugins as a fresh interpreter sees them after pip ran (allow/block lists ignored)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("LOCALAI_LOAD_PLUGINS", "LOCALAI_DISABLE_PLUGINS")}
    env["LOCALAI_STRICT_PLUGINS"] = "0"
    done = subprocess.run([sys.executable, "-m", "localai", "plugins", "--json"], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        click.echo(f"could not list plugins after pip: {done.stderr.strip()}", err=True)
        return None
    return json.loads(done.stdout)


def run_pip(*args: str) -> int:
    """Run pip with this interpreter (the server's environment), streaming its output."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "pip", *args]).returncode


@plugins.command("install")
@click.argument("packages", metavar="NAME|PATH|URL...", nargs=-1)
@click.option("-e", "--editable", "editables", multiple=True, metavar="PATH|URL",
              help="Install a project in editable mode.")
@click.option("-r", "--requirement", "requirement_files", multiple=True, type=click.Path(dir_okay=False),
              help="Install from a requirements file (e.g. one written by --requirements).")
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade to the newest available versions.")
@click.option("--force-reinstall", is_flag=True, help="Reinstall even if up to date.")
@click.option("--no-deps", is_flag=True, help="Don't install dependencies.")
@click.option("--pre", is_flag=True, help="Include pre-release versions.")
@click.pass_context
def plugins_install(ctx: click.Context, packages, editables, requirement_files, **flags):
    """Install plugins with pip into the environment local-ai runs in, then show what was added."""
    if not (packages or editables or requirement_files):
        raise click.UsageError("name at least one package, path or URL (or -e / -r)")
    before = entry_point_versions()
    args = ["install", *packages]
    for path in editables:
        args += ["-e", path]
    for path in requirement_files:
        args += ["-r", path]
    args += [f"--{flag.replace('_', '-')}" for flag, on in flags.items() if on]
    code = run_pip(*args)
    if code != 0:
        ctx.exit(code)
    rows = rows_after_pip()
    if rows is None:
        return
    changed = [r for r in rows if not r["builtin"] and before.get(r["name"], object()) != r["version"]]
    if not changed:
        click.echo("No new or updated plugins.")
    for row in changed:
        click.echo(("updated " if row["name"] in before else "installed ") + "plugin ", nl=False)
        echo_plugin(row)


@plugins.command("uninstall")
@click.argument("distributions", metavar="NAME...", nargs=-1, required=True)
@click.pass_context
def plugins_uninstall(ctx: click.Context, distributions):
    """Uninstall plugin distributions with pip uninstall -y (never localai-kernel itself)."""
    if any(canonical(name) == KERNEL_DISTRIBUTION for name in distributions):
        raise click.ClickException(
            f"refusing to uninstall {KERNEL_DISTRIBUTION}: it is local-ai itself; "
            f"use '{sys.executable} -m pip uninstall {KERNEL_DISTRIBUTION}' if you really mean it")
    before = entry_point_versions()
    code = run_pip("uninstall", "-y", *distributions)
    if code != 0:
        ctx.exit(code)
    rows = rows_after_pip()
    if rows is None:
        return
    left = {r["name"] for r in rows}
    for name in sorted(set(before) - left):
        click.echo(f"removed plugin {name}")
