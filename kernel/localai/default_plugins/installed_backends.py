"""Built-in backends installed in the backends directory (from galleries, OCI images, dirs).

Each ``<backends>/<name>/run.sh`` is started as ``run.sh --addr 127.0.0.1:PORT`` (LocalAI's
contract); a gallery alias and a meta backend name resolve to the same run file.
"""

from __future__ import annotations

import os

from localai import hookimpl
from localai.backend_spec import BackendSpec
from localai.gallery.store import BackendStore


@hookimpl
def localai_backends(settings):
    store = BackendStore(settings.backends_path, settings.backends_system_path)
    specs = []
    for backend in store.installed():
        if not backend.runnable:
            continue
        run_file = os.path.abspath(backend.run_file)  # started with cwd = its dir: a relative path breaks
        if not os.access(run_file, os.X_OK):
            os.chmod(run_file, 0o755)
        specs.append(BackendSpec(
            name=backend.name,
            argv=(run_file, "--addr", "{addr}"),
            cwd=os.path.dirname(run_file),
            aliases=(backend.alias,) if backend.alias else (),
            description=backend.metadata.get("description", "") or f"installed backend ({backend.path})",
            usecases=tuple(backend.metadata.get("usecases", ())),
            sigill_hint=f"install an image of it built for this CPU (`local-ai backends install "
                        f"<gallery@name or image> --name {backend.name} --force`)",
        ))
    return specs
