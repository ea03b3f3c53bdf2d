"""gRPC servicer of the llama-cpp backend (llama-cpp-python): handlers relay work to the
single llama worker thread that runs the :class:`~localai_plugin_llama_cpp.server.Engine`."""

from __future__ import annotations

from typing import Any, Callable

from localai.backend_server import abort_for, check_identity, status_response
from localai.backend_worker import Failure, Worker
from localai.proto import backend_pb2, backend_pb2_grpc

from .server import Engine


class LlamaServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service; handlers relay work to the single llama worker thread."""

    def __init__(self) -> None:
        self.worker = Worker("llama-worker")
        self.engine = Engine()
        self.model = ""

    def _check(self, request: Any, context: Any) -> None:
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)

    def _call(self, context: Any, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.worker.call(fn, *args)
        except Exception as exc:  # noqa: BLE001
            abort_for(exc, context, "llama-cpp")

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        try:
            result = self.worker.call(self.engine.load, request)
        except Exception as exc:  # noqa: BLE001
            result = backend_pb2.Result(success=False, message=f"failed to load model: {exc}")
        if result.success:
            self.model = request.Model or request.ModelFile
        return result

    def Predict(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.generate, request, False)

    def PredictStream(self, request, context):
        self._check(request, context)
        job = self.worker.submit(self.engine.generate, request, True)
        context.add_callback(job.cancel)
        out, Reply = job.out, backend_pb2.Reply
        try:
            while True:
                item = out.get()
                if type(item) is bytes:
                    yield Reply(message=item)
                elif type(item) is Failure:
                    abort_for(item.exc, context, "llama-cpp")
                else:
                    yield item
                    if not (item.message or item.chat_deltas):  # the last Reply: usage and timings
                        return
        finally:
            job.cancel()

    def Embedding(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.embed, request)

    def TokenizeString(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.tokenize, request)

    def Status(self, request, context):
        return status_response(self.engine.llm is not None, self.worker.busy)

    def Free(self, request, context):
        result = self.worker.call(self.engine.free)
        self.model = ""
        return result
