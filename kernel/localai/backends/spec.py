"""BackendSpec: what a plugin tells the kernel about a backend it provides."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackendSpec:
    """How to start one kind of backend.

    ``argv`` is the command that starts a gRPC server speaking ``protos/backend.proto``;
    every ``{addr}`` in it is replaced by ``127.0.0.1:PORT``. A spec with ``address``
    set instead describes a backend that is already running and is not managed.
    """

    name: str
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    usecases: tuple[str, ...] = ()
    description: str = ""
    aliases: tuple[str, ...] = ()
    address: str | None = None
    # request features the backend honours (see localai.api.capabilities.FEATURES): a request
    # asking a model for one its backend lacks is a 400, never silently ignored
    features: tuple[str, ...] = ()
    # what to tell the user when the backend dies of SIGILL (native code built for another CPU)
    sigill_hint: str = ""
    # which plugin registered it; filled in by the plugin host
    plugin: str = ""

    @property
    def managed(self) -> bool:
        """True when the kernel starts and stops the process itself."""
        return self.address is None

    def command(self, addr: str) -> list[str]:
        """The argv with ``{addr}`` substituted."""
        return [part.replace("{addr}", addr) for part in self.argv]


def package_path(import_name: str, *parts: str) -> str | None:
    """The path of ``parts`` inside an installed package (its directory when no parts), or None.

    The package is located with ``importlib.util.find_spec`` and never imported (model wheels
    may import heavy libraries in their ``__init__``). None when it is not installed, is not a
    package, or the path does not exist.
    """
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    return path if os.path.exists(path) else None
