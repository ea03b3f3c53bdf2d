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


def dialect_models(models: Path) -> None:
    write_model(models, "echo", capabilities=CAPS)
    write_model(models, "echo-slow", options=["token_delay:0.01"], capabilities=CAPS)
