"""LocalAI for Python: an OpenAI-compatible server whose models run in gRPC backend processes.

This module stays import-light: backend processes import ``localai.proto`` and
``localai.backend_server`` without pulling in the web stack.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("localai")
"""Decorator for plugin hook implementations: ``@localai.hookimpl``."""
