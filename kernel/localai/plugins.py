"""Loading plugins safely: built-ins first, then the ``localai`` entry-point group.

A plugin that fails to import or register is logged and recorded as broken; the server
still starts unless ``LOCALAI_STRICT_PLUGINS=1``. ``LOCALAI_LOAD_PLUGINS`` (allow-list) and
``LOCALAI_DISABLE_PLUGINS`` (block-list) name entry points or distributions.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from . import __version__, hookspecs
from .errors import ConfigError
from .settings import Settings

log = logging.getLogger("localai.plugins")

ENTRY_POINT_GROUP = "localai"

BUILTIN_PLUGINS = (
    "localai.default_plugins.local_launcher",
    "localai.default_plugins.external_backends",
    "localai.default_plugins.installed_backends",
    "localai.dialects.openai_chat",  # client dialects on the chat core (kernel/localai/dialects/)
    "localai.dialects.anthropic",
    "localai.dialects.ollama",
    "localai.dialects.responses",
)
# backends the user configured or installed win over a pip plugin's backend of the same name
USER_BACKEND_PLUGINS = (
    "localai.default_plugins.external_backends",
    "localai.default_plugins.installed_backends",
)


@dataclass
class PluginInfo:
    """What ``local-ai plugins`` shows for one plugin."""

    name: str
    distribution: str = ""
    version: str = ""
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "backends": self.backends,
            "error": self.error,
        }


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the ``localai`` hook specs."""
    pm = pluggy.PluginManager("localai")
    pm.add_hookspecs(hookspecs)
    return pm


def _selected(names: set[str], allow: list[str] | None, block: list[str]) -> bool:
    if names & set(block):
        return False
    return allow is None or bool(names & set(allow))


def load_plugins(pm: pluggy.PluginManager, settings: Settings) -> dict[str, PluginInfo]:
    """Register built-in and entry-point plugins on ``pm``; return their info by name."""
    infos: dict[str, PluginInfo] = {}

    def fail(info: PluginInfo, exc: BaseException) -> None:
        info.error = f"{type(exc).__name__}: {exc}"
        log.error("plugin %s failed to load: %s", info.name, info.error)
        if settings.strict_plugins:
            raise ConfigError(f"plugin {info.name} failed to load: {info.error}") from exc

    for module_name in BUILTIN_PLUGINS:
        infos[module_name] = PluginInfo(name=module_name, distribution="localai-kernel", version=__version__,
                                        builtin=True)
        pm.register(importlib.import_module(module_name), name=module_name)
    pm.check_pending()  # a built-in with an unknown hook is the kernel's bug

    seen: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else ""
        if ep.name in seen:
            continue
        seen.add(ep.name)
        if not _selected({ep.name, dist}, settings.load_plugins, settings.disable_plugins):
            log.info("plugin %s is not loaded (LOCALAI_LOAD_PLUGINS / LOCALAI_DISABLE_PLUGINS)", ep.name)
            continue
        info = infos[ep.name] = PluginInfo(
            name=ep.name, distribution=dist, version=ep.dist.version if ep.dist else ""
        )
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            check_hooks(pm, ep.name)
        except Exception as exc:  # a broken plugin must never stop the server
            fail(info, exc)

    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            info.hooks = sorted(impl_name for impl_name in dir(plugin) if impl_name.startswith("localai_"))
    return infos


def check_hooks(pm: pluggy.PluginManager, name: str) -> None:
    """Refuse (unregister, raise) the plugin ``name`` when it implements a hook the kernel does not
    specify, e.g. a misspelled ``localai_backend``: pluggy would never call it."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        callers = pm.get_hookcallers(pm.get_plugin(name)) or []
        unknown = sorted(caller.name for caller in callers if not caller.has_spec())
        pm.unregister(name=name)
        raise ConfigError(f"unknown hook {', '.join(unknown)} (the kernel's hooks are in localai.hookspecs)") from None


def call_each(pm: pluggy.PluginManager, hook_name: str, infos: dict[str, PluginInfo], strict: bool, **kwargs):
    """Call one hook plugin by plugin, yielding ``(plugin_name, result)``.

    A plugin whose hook raises is marked broken instead of breaking the whole call.
    """
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        info = infos.get(impl.plugin_name)
        if info is not None and info.broken:
            continue
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            items = list(result or ())
        except ConfigError:
            raise
        except Exception as exc:
            if info is not None:
                info.error = f"{hook_name}: {type(exc).__name__}: {exc}"
            log.error("plugin %s failed in %s: %s", impl.plugin_name, hook_name, exc)
            if strict:
                raise ConfigError(f"plugin {impl.plugin_name} failed in {hook_name}: {exc}") from exc
            continue
        for item in items:
            yield impl.plugin_name, item
