"""Built-in ``localai_launch_backend``: run backends as local subprocesses (or connect)."""

from __future__ import annotations

from localai import hookimpl
from localai.backends.process import LocalProcess, RemoteBackend


@hookimpl(trylast=True)
def localai_launch_backend(spec, addr, settings, model, env):
    if not spec.managed:
        return RemoteBackend(spec.address)
    return LocalProcess(spec, addr, model, extra_env=env)
