"""LocalAI for Python plugin: embeddings and rerank through sentence-transformers.

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC
backend process started as ``python -m localai_plugin_sentence_transformers --addr HOST:PORT``.
"""

__version__ = "0.1.0"
