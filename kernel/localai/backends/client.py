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


class BackendClient:
    """Thin async wrapper over the generated ``BackendStub``."""

    def __init__(self, address: str):
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)

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
