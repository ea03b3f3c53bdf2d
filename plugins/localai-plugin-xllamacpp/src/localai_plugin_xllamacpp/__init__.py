"""LocalAI for Python plugin: GGUF models on llama.cpp's own server engine (xllamacpp).

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC backend
process started as ``python -m localai_plugin_xllamacpp --addr HOST:PORT``.
"""

__version__ = "0.1.0"
