"""``python -m localai_plugin_xllamacpp --addr HOST:PORT``: serve the llama-cpp backend."""

import logging

from localai.backend_server import serve

from .server import XLlamaServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    # the kernel copies backend output into its own log, prefixed with the model name
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    serve(XLlamaServicer(), argv, prog="llama-cpp")


if __name__ == "__main__":
    main()
