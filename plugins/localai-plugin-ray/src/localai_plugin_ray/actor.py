"""BackendActor: a Ray actor that runs one backend process on the node it was placed on.

The actor is named (``<model>:<fingerprint>#<replica>`` in the plugin's namespace) and
detached, so every kernel connected to the cluster finds the same one and it outlives the
kernel that created it. It starts the backend's command as a subprocess serving gRPC on the
node's IP, counts the kernels using it, lets exactly one kernel run LoadModel per process, and
stops the process when the last kernel lets go. The process is SIGKILLed if the actor's worker
dies (node lost), so a backend never outlives its actor.

Ray runs this class on cluster nodes: it imports only the stdlib, ``ray`` and ``localai``.
"""

from __future__ import annotations

import asyncio
import logging
import os

import ray

from localai.backends.process import LocalProcess, free_port
from localai.backends.spec import BackendSpec


class BackendActor:
    """One backend process on this node (async actor: calls interleave at ``await``)."""

    def __init__(self, model: str, argv: list[str], env: dict[str, str], cwd: str | None, files: list[str]):
        self.model = model
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.files = list(files)
        self.process: LocalProcess | None = None
        self.address = ""
        self.generation = 0
        self.kernels: set[str] = set()
        self.state = "idle"  # idle | loading | loaded (LoadModel of the current process)
        self.load_done = asyncio.Event()
        self.closed = False
        self.lock = asyncio.Lock()
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # backend output → worker log

    # -- where -------------------------------------------------------------------------

    def node(self) -> dict:
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
        }

    def info(self) -> dict:
        """Where the backend runs and in what state (shown by the kernel's ``/system``)."""
        return {
            **self.node(),
            "address": self.address,
            "pid": self.process.pid if self.process else None,
            "generation": self.generation,
            "kernels": len(self.kernels),
            "state": self.state,
            "running": self.running(),
        }

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    # -- process -----------------------------------------------------------------------

    def _check_files(self) -> None:
        missing = [path for path in self.files if not os.path.exists(path)]
        if missing:
            where = self.node()
            raise FileNotFoundError(
                f"model {self.model!r}: {', '.join(missing)} not found on Ray node {where['node_ip']} "
                f"({where['node_id'][:12]}); models and backends must be on a path every node shares "
                "(the same path as on the kernel's machine)"
            )

    async def _start(self) -> None:
        self._check_files()
        ip = ray.util.get_node_ip_address()
        host = f"[{ip}]" if ":" in ip else ip
        self.address = f"{host}:{free_port(ip)}"
        spec = BackendSpec(name=self.model, argv=tuple(self.argv), env=self.env, cwd=self.cwd)
        self.process = LocalProcess(spec, self.address, self.model)
        await self.process.start()
        self.generation += 1
        self.state = "idle"
        self.load_done = asyncio.Event()

    def describe_exit(self) -> str:
        return self.process.describe_exit() if self.process else "not started"

    async def _stop(self, grace: float) -> None:
        if self.process is not None and self.process.alive():
            await self.process.stop(grace)

    # -- kernels -----------------------------------------------------------------------

    async def attach(self, kernel: str) -> dict | None:
        """Count ``kernel`` as a user; start the process if none runs. None: the actor is closing."""
        async with self.lock:
            if self.closed:
                return None
            if not self.running():
                await self._start()
            self.kernels.add(kernel)
            return self.info()

    async def release(self, kernel: str, grace: float) -> bool:
        """Drop ``kernel``; the last one stops the process and closes the actor (True)."""
        async with self.lock:
            self.kernels.discard(kernel)
            if self.kernels:
                return False
            self.closed = True
            await self._stop(grace)
            return True

    async def begin_load(self, generation: int, timeout: float) -> bool:
        """True: the caller runs LoadModel on this process; False: another kernel already did.

        A kernel that took the turn and then vanished is waited for at most ``timeout`` seconds.
        """
        while True:
            if generation != self.generation:
                raise RuntimeError(f"the backend of {self.model!r} was restarted; load it again")
            if self.state == "loaded":
                return False
            if self.state == "idle":
                self.state = "loading"
                self.load_done = asyncio.Event()
                return True
            try:
                await asyncio.wait_for(self.load_done.wait(), timeout)
            except asyncio.TimeoutError:
                self.state = "idle"

    def end_load(self, generation: int, ok: bool) -> None:
        if generation == self.generation and self.state == "loading":
            self.state = "loaded" if ok else "idle"
            self.load_done.set()

    async def wait_exit(self, generation: int) -> str:
        """Return when process ``generation`` exits: how it ended."""
        process = self.process
        if process is None or generation != self.generation:
            return "replaced by a newer backend process"
        await process.wait()
        return process.describe_exit()
