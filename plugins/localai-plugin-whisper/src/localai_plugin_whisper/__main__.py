"""``python -m localai_plugin_whisper --addr HOST:PORT``: serve the faster-whisper backend."""

from localai.backend_server import serve

from .server import WhisperServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    serve(WhisperServicer(), argv, prog="faster-whisper")


if __name__ == "__main__":
    main()
