"""``python -m localai_plugin_llama_cpp --addr HOST:PORT``: serve the llama-cpp backend."""

from localai.backend_server import serve

from .servicer import LlamaServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    serve(LlamaServicer(), argv, prog="llama-cpp")


if __name__ == "__main__":
    main()
