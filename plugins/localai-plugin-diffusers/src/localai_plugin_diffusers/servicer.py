"""gRPC servicer of the diffusers backend: checks a request's size, steps and paths, then relays the
work to the one worker thread that runs the :class:`~localai_plugin_diffusers.server.Engine`."""

from __future__ import annotations

import os
import threading

import grpc

from localai.backend_server import abort_for, check_identity, status_response
from localai.backend_worker import Worker
from localai.proto import backend_pb2, backend_pb2_grpc

from . import server
from .server import DEFAULT_SIZE, MAX_SIZE, MAX_STEPS, MIN_SIZE, Cancelled, Engine


class DiffusersServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service; model work is relayed to one worker thread."""

    def __init__(self) -> None:
        self.worker = Worker("diffusers")
        self.engine = Engine()
        self.model = ""

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        result = self.worker.run(self.engine.load, request)
        self.model = (request.Model or request.ModelFile) if result.success else ""
        return result

    def GenerateImage(self, request, context):
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)
        if self.engine.pipe is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "model not loaded")
        width = request.width or DEFAULT_SIZE
        height = request.height or DEFAULT_SIZE
        steps = request.step or self.engine.steps
        if not all(MIN_SIZE <= v <= MAX_SIZE and v % 8 == 0 for v in (width, height)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"size must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE} "
                          f"(got {width}x{height})")
        if not 1 <= steps <= MAX_STEPS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"step must be between 1 and {MAX_STEPS} (got {steps})")
        if not request.positive_prompt.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "positive_prompt must not be empty")
        if not request.dst:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "dst (output path) is required")
        if request.src and not os.path.isfile(request.src):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"src image not found: {request.src}")
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        try:
            return self.worker.run(self.engine.generate, request, width, height, steps, cancelled)
        except Cancelled:
            context.abort(grpc.StatusCode.CANCELLED, "cancelled")
        except Exception as exc:  # noqa: BLE001
            abort_for(exc, context, "diffusers")

    def Status(self, request, context):
        status = status_response(self.engine.pipe is not None, self.worker.busy)
        if self.engine.device.startswith("cuda") and server.torch is not None:
            status.memory.breakdown["cuda_allocated"] = server.torch.cuda.memory_allocated()
        return status

    def Free(self, request, context):
        result = self.worker.run(self.engine.free)
        self.model = ""
        return result
