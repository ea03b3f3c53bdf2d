"""Built-in backends from ``--external-grpc-backends`` / ``LOCALAI_EXTERNAL_GRPC_BACKENDS``.

LocalAI's forms: ``name:host:port`` (already running, not managed) and
``name:/path/to/run.sh`` (started and managed; ``--addr`` is appended as in LocalAI).
"""

from __future__ import annotations

import os

from localai import hookimpl
from localai.backend_spec import BackendSpec
from localai.errors import ConfigError


def parse_external(entry: str) -> BackendSpec:
    """Turn one ``name:uri`` entry into a BackendSpec (split at the first colon)."""
    name, sep, uri = entry.partition(":")
    name, uri = name.strip(), uri.strip()
    if not sep or not name or not uri:
        raise ConfigError(f"external gRPC backend {entry!r} is not NAME:HOST:PORT or NAME:/path/to/run.sh")
    looks_like_path = uri.startswith(("/", "./", "../", "~")) or os.path.exists(uri)
    if looks_like_path:
        path = os.path.abspath(os.path.expanduser(uri))
        if not os.path.isfile(path):
            raise ConfigError(f"external gRPC backend {name!r}: {path} does not exist")
        if not os.access(path, os.X_OK):
            os.chmod(path, 0o700)
        return BackendSpec(
            name=name,
            argv=(path, "--addr", "{addr}"),
            cwd=os.path.dirname(path),
            description=f"external backend started from {path}",
        )
    host, _, port = uri.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"external gRPC backend {name!r}: {uri!r} is not HOST:PORT")
    return BackendSpec(name=name, address=uri, description=f"external backend at {uri}")


@hookimpl
def localai_backends(settings):
    return [parse_external(entry) for entry in settings.external_grpc_backends]
