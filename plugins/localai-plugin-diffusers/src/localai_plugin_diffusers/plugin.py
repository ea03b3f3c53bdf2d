"""Hooks of the diffusers plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``: torch and
diffusers are imported by the backend process alone. No default model: none ships on PyPI.
"""

from __future__ import annotations

import sys

from localai import hookimpl
from localai.backends.spec import BackendSpec

USECASES = ("image",)


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``diffusers`` backend: one gRPC process per loaded image model."""
    return [
        BackendSpec(
            name="diffusers",
            argv=(sys.executable, "-m", "localai_plugin_diffusers", "--addr", "{addr}"),
            usecases=USECASES,
            description="Image generation (text-to-image, image-to-image) with Hugging Face "
            "diffusers pipelines (Stable Diffusion, SDXL, ...)",
        )
    ]
