"""Bootstrap shared by Python backend processes: ``serve(servicer)`` runs a gRPC ``backend.Backend``.

Handles ``--addr``, the 50 MB message limits, ``PYTHON_GRPC_MAX_WORKERS``, bearer-token auth
(``LOCALAI_GRPC_AUTH_TOKEN``: the kernel gives every backend it starts a fresh one), the output
directory (``LOCALAI_BACKEND_OUTPUT_DIR``: output ``dst`` paths elsewhere are refused), SIGTERM/SIGINT
shutdown and the parent watch. Also the small helpers servicers share: ``model_file``,
``parse_options``, ``truthy``, ``rss``, ``status_response`` and the ``NotLoaded``/``BadRequest``
errors that ``abort_for`` turns into gRPC status codes. Imports
only the stdlib, grpc and the generated stubs, so backends start fast and stay free of the web stack.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from localai.proto import backend_pb2, backend_pb2_grpc

DEFAULT_ADDR = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
AUTH_TOKEN_ENV = "LOCALAI_GRPC_AUTH_TOKEN"
OUTPUT_DIR_ENV = "LOCALAI_BACKEND_OUTPUT_DIR"
# the calls whose ``dst`` is a path the backend writes (in others, e.g. AudioTranscription, it is read)
OUTPUT_RPCS = frozenset({"GenerateImage", "UpscaleImage", "GenerateVideo", "Generate3D", "TTS", "TTSStream",
                         "SoundGeneration", "Depth", "AudioTransform"})
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


class BearerAuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls whose ``authorization`` metadata is not ``Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        """Pass authorised calls through; answer others with an aborting handler of the same shape."""
        got = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(got).encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None

        def deny(_request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing bearer token")

        kinds = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(deny, handler.request_deserializer, handler.response_serializer)


class OutputDirInterceptor(grpc.ServerInterceptor):
    """Refuses (PERMISSION_DENIED) an output call whose ``dst`` does not resolve inside ``root``."""

    def __init__(self, root: str):
        self._root = os.path.realpath(root)

    def outside(self, dst: str) -> bool:
        """True when ``dst`` (symlinks resolved) is not a path strictly inside the root."""
        path = os.path.realpath(dst)
        return path == self._root or os.path.commonpath([path, self._root]) != self._root

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method.rpartition("/")[2]
        if handler is None or method not in OUTPUT_RPCS or handler.request_streaming:
            return handler
        streaming = handler.response_streaming
        behaviour = handler.unary_stream if streaming else handler.unary_unary

        def guarded(request, context):
            if request.dst and self.outside(request.dst):
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"dst {request.dst!r} is outside the output directory this backend was given "
                              f"({OUTPUT_DIR_ENV}={self._root})")
            return behaviour(request, context)

        make = grpc.unary_stream_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
        return make(guarded, handler.request_deserializer, handler.response_serializer)


def interceptors() -> list[grpc.ServerInterceptor]:
    """The auth and output-directory checks this process's environment asks for (auth first)."""
    token = os.environ.get(AUTH_TOKEN_ENV, "")
    root = os.environ.get(OUTPUT_DIR_ENV, "")
    return ([BearerAuthInterceptor(token)] if token else []) + ([OutputDirInterceptor(root)] if root else [])


def check_identity(request_identity: str, loaded: str, context) -> bool:
    """Abort with NOT_FOUND when a non-empty ``ModelIdentity`` differs from the loaded model."""
    if request_identity and request_identity != loaded:
        context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"model identity mismatch: request for {request_identity!r}, loaded {loaded!r}",
        )
        return False  # only reached with a context whose abort does not raise
    return True


class NotLoaded(Exception):
    """A model call arrived before LoadModel succeeded (FAILED_PRECONDITION)."""


class BadRequest(Exception):
    """The request cannot be served as asked (INVALID_ARGUMENT)."""


def abort_for(exc: Exception, context, backend: str) -> None:
    """Abort the call that a model call failed for: ``NotLoaded`` is FAILED_PRECONDITION,
    ``BadRequest`` INVALID_ARGUMENT (its message), anything else INTERNAL ``"<backend>: Type: message"``."""
    if isinstance(exc, NotLoaded):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "model not loaded")
    elif isinstance(exc, BadRequest):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    else:
        context.abort(grpc.StatusCode.INTERNAL, f"{backend}: {type(exc).__name__}: {exc}")


def model_file(request) -> str:
    """``ModelFile``, else ``Model`` joined to ``ModelPath`` when that is set ("" when neither is given)."""
    if request.ModelFile or not request.Model:
        return request.ModelFile
    return os.path.join(request.ModelPath, request.Model) if request.ModelPath else request.Model


def parse_options(options) -> dict[str, str]:
    """``["key:value", "flag"]`` → ``{"key": "value", "flag": "true"}``."""
    parsed: dict[str, str] = {}
    for opt in options:
        key, sep, value = opt.partition(":")
        parsed[key.strip()] = value.strip() if sep else "true"
    return parsed


def chat_message(m) -> dict:
    """A proto ``Message`` as an OpenAI-style chat message for a chat template."""
    msg: dict = {"role": m.role, "content": m.content}
    if m.name:
        msg["name"] = m.name
    if m.tool_call_id:
        msg["tool_call_id"] = m.tool_call_id
    if m.reasoning_content:
        msg["reasoning_content"] = m.reasoning_content
    if m.tool_calls:
        try:
            msg["tool_calls"] = json.loads(m.tool_calls)
        except ValueError:
            pass
    return msg


def template_kwargs(metadata) -> dict:
    """Extra chat-template variables from ``PredictOptions.Metadata``: the JSON object in
    ``chat_template_kwargs`` and ``enable_thinking`` (raises ValueError on bad JSON)."""
    kwargs = json.loads(metadata["chat_template_kwargs"]) if metadata.get("chat_template_kwargs") else {}
    if "enable_thinking" in metadata:
        kwargs["enable_thinking"] = truthy(metadata["enable_thinking"])
    return kwargs


def truthy(value: str | None) -> bool:
    """``1``, ``true``, ``yes``, ``on`` or ``enabled`` (any case, blanks ignored)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "enabled")


def rss() -> int:
    """Resident set size of this process in bytes (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def status_response(loaded: bool, busy: bool) -> backend_pb2.StatusResponse:
    """Status: UNINITIALIZED without a model, BUSY while a model call runs, else READY; RSS as memory."""
    if not loaded:
        state = backend_pb2.StatusResponse.UNINITIALIZED
    elif busy:
        state = backend_pb2.StatusResponse.BUSY
    else:
        state = backend_pb2.StatusResponse.READY
    return backend_pb2.StatusResponse(state=state, memory=backend_pb2.MemoryUsageData(total=rss()))


def _env_flag(name: str, default: bool = True) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def start_parent_watch(interval: float | None = None) -> threading.Thread:
    """Start a daemon thread that exits this process when its parent process goes away."""
    if interval is None:
        interval = float(os.environ.get("LOCALAI_BACKEND_PARENT_WATCH_INTERVAL", "1.0"))
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(0)

    thread = threading.Thread(target=watch, name="localai-parent-watch", daemon=True)
    thread.start()
    return thread


def build_server(servicer, max_workers: int | None = None) -> grpc.Server:
    """Create (not start) a gRPC server with LocalAI's limits, auth and the servicer registered."""
    workers = max_workers or int(os.environ.get("PYTHON_GRPC_MAX_WORKERS", "32"))
    server = grpc.server(ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS, interceptors=interceptors())
    backend_pb2_grpc.add_BackendServicer_to_server(servicer, server)
    return server


def serve(servicer, argv=None, *, prog: str = "localai-backend", max_workers: int | None = None) -> None:
    """Serve ``servicer`` on ``--addr`` until SIGTERM/SIGINT (or the parent dies), then return."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--addr", default=DEFAULT_ADDR, help="HOST:PORT to listen on")
    args, _unknown = parser.parse_known_args(argv)

    server = build_server(servicer, max_workers)
    if not server.add_insecure_port(args.addr):
        raise SystemExit(f"{prog}: cannot bind {args.addr}")
    server.start()

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if _env_flag("LOCALAI_BACKEND_PARENT_WATCH"):
        start_parent_watch()

    print(f"{prog} listening on {args.addr}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(2).wait()
