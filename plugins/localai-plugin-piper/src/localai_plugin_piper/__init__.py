"""LocalAI for Python plugin: text to speech with piper-tts (ONNX voices).

``plugin`` holds the (import-light) hooks the kernel loads; ``server`` is the gRPC
backend process started as ``python -m localai_plugin_piper --addr HOST:PORT``.
"""

__version__ = "0.1.0"
