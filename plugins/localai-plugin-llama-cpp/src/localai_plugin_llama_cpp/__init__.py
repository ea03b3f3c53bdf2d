"""LocalAI for Python plugin: GGUF models through llama-cpp-python.

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC
backend process started as ``python -m localai_plugin_llama_cpp --addr HOST:PORT``.
"""

__version__ = "0.1.0"
