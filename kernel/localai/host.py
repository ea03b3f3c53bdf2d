"""PluginHost: the typed facade the rest of the kernel uses to talk to plugins."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

from . import metrics
from .backend_spec import BackendSpec
from .errors import ConfigError
from .plugins import USER_BACKEND_PLUGINS, PluginInfo, call_each, load_plugins, new_plugin_manager
from .settings import Settings

log = logging.getLogger("localai.host")


class PluginHost:
    """Loads plugins once and answers: which backends, which default models, launch this.

    Every hook is called through it. :meth:`for_settings` gives another host over the same loaded
    plugins (the CLI loads them once per process, then serves or lists with the command's settings).
    """

    def __init__(self, settings: Settings, lenient: bool = False, _loaded: PluginHost | None = None):
        """Load plugins. A backend name registered twice raises ConfigError, unless ``lenient``
        (for listing), where the second registration is recorded as that plugin's error; so does a
        plugin that failed to load when ``settings.strict_plugins``."""
        self.settings = settings
        self.lenient = lenient
        if _loaded is None:
            self.pm = new_plugin_manager()
            self.plugins: dict[str, PluginInfo] = load_plugins(self.pm, settings)
        else:
            self.pm = _loaded.pm
            # each host records its own hook failures: only what loading said is shared
            self.plugins = {name: dataclasses.replace(info, hooks=list(info.hooks), backends=[],
                                                      error=_loaded.load_errors.get(name))
                            for name, info in _loaded.plugins.items()}
        self.load_errors = {name: info.error for name, info in self.plugins.items() if info.error}
        if self.load_errors and settings.strict_plugins and not lenient:
            name, error = next(iter(self.load_errors.items()))
            raise ConfigError(f"plugin {name} failed to load: {error}")
        self.refresh_backends()
        self.has_inference_hooks = bool(
            self.pm.hook.localai_before_inference.get_hookimpls()
            or self.pm.hook.localai_after_inference.get_hookimpls()
        )

    def for_settings(self, settings: Settings, lenient: bool = False) -> PluginHost:
        """A host over these loaded plugins (not loaded again) for ``settings``; unless ``lenient``, the
        plugins that failed to load are logged."""
        host = PluginHost(settings, lenient, _loaded=self)
        if not lenient:
            for info in host.plugins.values():
                if info.error:
                    log.error("plugin %s failed to load: %s", info.name, info.error)
        return host

    def refresh_backends(self) -> None:
        """Ask plugins for their backends again (after a backend was installed or deleted)."""
        for info in self.plugins.values():
            info.backends = []
        self.backends: dict[str, BackendSpec] = self._collect_backends()
        self._aliases = self._collect_aliases()

    def _collect_backends(self) -> dict[str, BackendSpec]:
        specs: dict[str, BackendSpec] = {}
        for plugin, spec in call_each(
            self.pm, "localai_backends", self.plugins, self.settings.strict_plugins, settings=self.settings
        ):
            if not isinstance(spec, BackendSpec):
                log.error("plugin %s returned a %s from localai_backends, not a BackendSpec", plugin, type(spec))
                continue
            spec = BackendSpec(**{**spec.__dict__, "plugin": plugin})
            other = specs.get(spec.name)
            if other is not None and (plugin in USER_BACKEND_PLUGINS) != (other.plugin in USER_BACKEND_PLUGINS):
                winner = spec if plugin in USER_BACKEND_PLUGINS else other
                loser = other if winner is spec else spec
                log.info("backend %r from %s takes precedence over the one from plugin %s",
                         spec.name, winner.plugin, loser.plugin)
                specs[spec.name] = winner
                continue
            if other is not None:
                message = (
                    f"backend {spec.name!r} is registered by two plugins: {other.plugin!r} and {plugin!r}; "
                    "disable one with LOCALAI_DISABLE_PLUGINS"
                )
                if not self.lenient:
                    raise ConfigError(message)
                if plugin in self.plugins:
                    self.plugins[plugin].error = message
                continue
            specs[spec.name] = spec
            if plugin in self.plugins:
                self.plugins[plugin].backends.append(spec.name)
        return specs

    def _collect_aliases(self) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for spec in self.backends.values():
            for alias in spec.aliases:
                if alias not in self.backends:
                    aliases.setdefault(alias, spec.name)
        return aliases

    def backend(self, name: str) -> BackendSpec | None:
        """The backend registered under ``name`` or one of its aliases."""
        spec = self.backends.get(name)
        if spec is None and name in self._aliases:
            spec = self.backends.get(self._aliases[name])
        return spec

    def model_configs(self) -> list[tuple[str, dict[str, Any]]]:
        """Model configs shipped by plugins, as ``(plugin, mapping)``."""
        return list(
            call_each(
                self.pm, "localai_model_configs", self.plugins, self.settings.strict_plugins, settings=self.settings
            )
        )

    def launch(self, spec: BackendSpec, addr: str, model: str, config: Any = None,
               env: dict[str, str] | None = None):
        """Start a backend process through the ``localai_launch_backend`` hook."""
        env = self.settings.backend_env() if env is None else env
        return self.pm.hook.localai_launch_backend(spec=spec, addr=addr, settings=self.settings, model=model,
                                                   config=config, env=env)

    def before_inference(self, request: dict[str, Any]) -> None:
        if self.has_inference_hooks:
            self.pm.hook.localai_before_inference(request=request)

    def after_inference(self, request: dict[str, Any], result: dict[str, Any]) -> None:
        metrics.count_tokens(request, result)
        if self.has_inference_hooks:
            self.pm.hook.localai_after_inference(request=request, result=result)

    def register_routes(self, app) -> None:
        self.pm.hook.localai_register_routes(app=app)

    def register_commands(self, cli) -> None:
        self.pm.hook.localai_register_commands(cli=cli)

    async def lifecycle(self, hook_name: str, app) -> None:
        """Run ``localai_startup``/``localai_shutdown``, awaiting any awaitables they return."""
        for result in getattr(self.pm.hook, hook_name)(app=app):
            if inspect.isawaitable(result):
                await result
