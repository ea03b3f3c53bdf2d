"""LocalAI for Python plugin: image generation through Hugging Face diffusers.

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC
backend process started as ``python -m localai_plugin_diffusers --addr HOST:PORT``;
``tiny`` builds a tiny random-weight pipeline for tests and benchmarks.
"""

__version__ = "0.1.0"
