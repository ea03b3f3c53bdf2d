"""The plugin API's objects besides the hooks (:mod:`localai.hookspecs`): ``BackendSpec``, what a
plugin tells the kernel about a backend it provides; ``BackendHandle``, what ``localai_launch_backend``
returns; ``package_path``, for plugins that find their backend's files in an installed package.

This module imports nothing of the kernel, so plugins (and the plugin host) depend only on the
bottom of it. ``localai.backends.spec`` re-exports these names for existing plugins.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class BackendHandle(Protocol):
    """What the kernel needs from a started backend, wherever it runs.

    Optional members, read with ``getattr`` by the model manager (a handle without them
    behaves as one local process):

    - ``addresses: list[str]`` — every gRPC address serving the model (replicas), read after
      ``start()``; requests are spread over them round-robin. Default ``[address]``.
    - ``async load(load_one)`` — run LoadModel where it is needed by awaiting
      ``load_one(address)`` (Health wait + LoadModel on that address); a handle shared with
      other kernels skips replicas that another kernel already loaded. Default: every address.
    - ``shared: bool`` — other kernels may use the same backend: unloading does not call Free
      and ``stop()`` only drops this kernel's reference (the backend stops with the last one).
    - ``placement`` — JSON-able description of where it runs, shown in ``/system``.
    - ``token: str`` — the secret its backends require, when it is not the ``LOCALAI_GRPC_AUTH_TOKEN``
      of the ``env`` the launch hook was given (a backend another kernel started). Default: that one.
    """

    address: str

    async def start(self) -> None: ...

    def alive(self) -> bool: ...

    async def wait(self) -> int | None: ...

    async def stop(self, grace: float) -> None: ...

    def describe_exit(self) -> str: ...
