"""``python -m localai_plugin_diffusers --addr HOST:PORT``: serve the diffusers backend."""

from localai.backend_server import serve

from .servicer import DiffusersServicer


def main(argv: list[str] | None = None) -> None:
    """Run the gRPC server until SIGTERM or parent death."""
    serve(DiffusersServicer(), argv, prog="diffusers")


if __name__ == "__main__":
    main()
