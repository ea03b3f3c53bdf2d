"""LocalAI for Python: an OpenAI-compatible server whose models run in gRPC backend processes.

This module stays import-light: backend processes import ``localai.proto`` and
``localai.backend_server`` without pulling in the web stack.
"""

import os

import pluggy

# Backends are started with a preexec_fn (PR_SET_PDEATHSIG); with gRPC's fork handlers on, a child
# forked while other threads are in gRPC calls can crash before exec. Must be set before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("localai")
"""Decorator for plugin hook implementations: ``@localai.hookimpl``."""
