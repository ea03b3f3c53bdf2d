"""HTTP backends: a model served by an OpenAI-compatible HTTP server instead of a gRPC backend.

A model config says ``backend: http`` and, in LocalAI's ``proxy:`` section, where the server is
(``upstream_url``, e.g. ``http://127.0.0.1:9000/v1``), which model name to ask it for
(``upstream_model``), its API key (``api_key_env`` or ``api_key_file``, read per request) and
``request_timeout_seconds``. With ``command`` (argv, ``{port}`` substituted) and optionally
``ready_url``, the kernel starts and supervises the server itself, like any backend process.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..errors import BadRequest, LoadError
from ..models.config import ModelConfig

HTTP_BACKENDS = ("http", "proxy", "openai-compatible")


def is_http_model(config: ModelConfig) -> bool:
    return config.backend_name in HTTP_BACKENDS


@dataclass
class UpstreamOptions:
    upstream_url: str = ""
    upstream_model: str = ""
    api_key_env: str = ""
    api_key_file: str = ""
    request_timeout_seconds: float = 600.0
    command: list[str] = field(default_factory=list)
    ready_url: str = ""

    @classmethod
    def from_config(cls, config: ModelConfig) -> "UpstreamOptions":
        section = dict(config.proxy or {})
        command = section.get("command") or []
        if isinstance(command, str):
            command = command.split()
        opts = cls(
            upstream_url=str(section.get("upstream_url") or "").rstrip("/"),
            upstream_model=str(section.get("upstream_model") or config.parameters.model or config.name),
            api_key_env=str(section.get("api_key_env") or ""),
            api_key_file=str(section.get("api_key_file") or ""),
            request_timeout_seconds=float(section.get("request_timeout_seconds") or 600),
            command=[str(part) for part in command],
            ready_url=str(section.get("ready_url") or ""),
        )
        if not opts.upstream_url and not opts.command:
            raise BadRequest(f"model {config.name!r} uses the http backend but sets neither proxy.upstream_url "
                             "nor proxy.command")
        return opts

    def with_port(self, port: int) -> "UpstreamOptions":
        def sub(text: str) -> str:
            return text.replace("{port}", str(port))

        base = sub(self.upstream_url) or f"http://127.0.0.1:{port}/v1"
        return UpstreamOptions(base, self.upstream_model, self.api_key_env, self.api_key_file,
                               self.request_timeout_seconds, [sub(p) for p in self.command],
                               sub(self.ready_url) or f"{base}/models")


class HttpUpstream:
    """A pooled async HTTP client for one upstream server."""

    def __init__(self, options: UpstreamOptions):
        self.options = options
        timeout = httpx.Timeout(options.request_timeout_seconds, connect=10.0)
        self.client = httpx.AsyncClient(base_url=options.upstream_url, timeout=timeout,
                                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    def headers(self) -> dict[str, str]:
        """Auth headers, read per request so a rotated key is picked up."""
        key = ""
        if self.options.api_key_env:
            # Not configuration read outside Settings: the operator's model config names the variable
            # holding this upstream's key (one per model), read per request so a rotated key is seen.
            key = os.environ.get(self.options.api_key_env, "")
        elif self.options.api_key_file:
            try:
                key = Path(self.options.api_key_file).expanduser().read_text().strip()
            except OSError:
                key = ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def wait_ready(self, handle, timeout: float) -> None:
        """Poll ``ready_url`` until it answers 2xx (the managed process may still be starting)."""
        deadline = time.monotonic() + timeout
        url = self.options.ready_url
        async with httpx.AsyncClient(timeout=2.0) as probe:
            while True:
                if handle is not None and not handle.alive():
                    raise LoadError(f"the upstream server exited ({handle.describe_exit()})")
                try:
                    if (await probe.get(url, headers=self.headers())).is_success:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise LoadError(f"the upstream server did not answer {url} within {timeout:.0f}s")
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.client.aclose()
