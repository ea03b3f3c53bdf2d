"""Helpers of the dialect tests."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.kernel_helpers import write_model

TOOL_BACKEND = Path(__file__).with_name("tool_backend.py")
CAPS = ["tools", "json_schema"]


def tool_backend_script(directory: Path) -> Path:
    """A LocalAI-style ``run.sh`` starting ``tool_backend.py``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "run.sh"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TOOL_BACKEND}" "$@"\n')
    script.chmod(0o755)
    return script


def tool_backend_env(root: Path, **extra: str) -> dict[str, str]:
    """A server env serving ``tool_backend.py`` as the ``echo`` backend, with no galleries."""
    return {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{tool_backend_script(root / 'backend')}",
            "LOCALAI_GALLERIES": "[]", "LOCALAI_BACKEND_GALLERIES": "[]", **extra}


def dialect_models(models: Path) -> None:
    write_model(models, "echo", capabilities=CAPS)
    write_model(models, "echo-slow", options=["token_delay:0.01"], capabilities=CAPS)
