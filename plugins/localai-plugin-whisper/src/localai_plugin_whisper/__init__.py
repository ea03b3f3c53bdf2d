"""LocalAI for Python plugin: speech-to-text through faster-whisper.

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC
backend process started as ``python -m localai_plugin_whisper --addr HOST:PORT``.
"""

__version__ = "0.1.0"
