"""``python -m localai_plugin_piper --addr HOST:PORT``: serve the piper backend."""

from localai.backend_server import serve

from .server import PiperServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    serve(PiperServicer(), argv, prog="piper")


if __name__ == "__main__":
    main()
