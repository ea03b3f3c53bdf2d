"""BackendClient: a grpc.aio connection to one backend process."""

from __future__ import annotations

import grpc

from ..proto import backend_pb2, backend_pb2_grpc

MAX_MESSAGE = 50 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.enable_http_proxy", 0),
    # a backend that is still starting refuses connections: retry quickly, not after 1 s
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class _WithToken:
    """A stub method that sends ``authorization: Bearer <token>`` with every call."""

    __slots__ = ("_method", "_metadata")

    def __init__(self, method, metadata: tuple):
        self._method = method
        self._metadata = metadata

    def __call__(self, request, **kwargs):
        kwargs["metadata"] = tuple(kwargs.get("metadata") or ()) + self._metadata
        return self._method(request, **kwargs)


class BackendClient:
    """Thin async wrapper over the generated ``BackendStub``.

    With ``token``, every call through ``stub`` carries it as LocalAI's ``authorization: Bearer``
    metadata (``LOCALAI_GRPC_AUTH_TOKEN`` on the backend's side); backends that do not check ignore it.
    """

    def __init__(self, address: str, token: str = ""):
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        if token:
            metadata = (("authorization", f"Bearer {token}"),)
            for name, method in list(vars(self.stub).items()):
                setattr(self.stub, name, _WithToken(method, metadata))

    async def health(self, timeout: float = 2.0) -> bool:
        """True when the backend answers Health with "OK"."""
        reply = await self.stub.Health(backend_pb2.HealthMessage(), timeout=timeout)
        return reply.message == b"OK"

    async def load_model(self, options: backend_pb2.ModelOptions, timeout: float) -> backend_pb2.Result:
        return await self.stub.LoadModel(options, timeout=timeout)

    async def free(self, timeout: float) -> None:
        await self.stub.Free(backend_pb2.HealthMessage(), timeout=timeout)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; with ``grace``, calls in progress get that long to finish."""
        await self.channel.close(grace=grace)
