"""``python -m localai_plugin_sentence_transformers --addr HOST:PORT``: serve the backend."""

from localai.backend_server import serve

from .server import SentenceTransformersServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    serve(SentenceTransformersServicer(), argv, prog="sentence-transformers")


if __name__ == "__main__":
    main()
