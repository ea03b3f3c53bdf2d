"""The kernel's side: its Ray connection and RayBackend, the handle of a backend on the cluster.

Imported only when a Ray address is set: this is the one module of the kernel process that
imports ``ray``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Awaitable, Callable

from localai.errors import LoadError

from .options import RayOptions, placement_timeout, ray_namespace

log = logging.getLogger("localai.ray")

# this kernel, as the actors count their users
KERNEL_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

_connect_lock = threading.Lock()


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]") or address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a wrong address (``ray.init`` would keep retrying it for minutes)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({exc}); is `ray start --head` "
                              "running there, and is this its GCS port?") from None


def connect(address: str) -> None:
    """Join the cluster at ``address`` as a driver (once per process; blocking)."""
    with _connect_lock:
        _check_reachable(address)
        if _is_loopback(address):
            # a cluster on this machine bound to 127.0.0.1: Ray would rewrite a loopback address
            # to the machine's routable IP, where nothing listens
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        if ray.is_initialized():
            return
        started = time.monotonic()
        ray.init(address=address, namespace=ray_namespace(), log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=False)
        log.info("joined the Ray cluster at %s (namespace %s) in %.2fs", address, ray_namespace(),
                 time.monotonic() - started)


def _remote_actor_class():
    import ray

    from .actor import BackendActor

    return ray.remote(max_restarts=0, max_task_retries=0)(BackendActor)


async def _result(ref: Any, timeout: float) -> Any:
    """Await an actor call's ObjectRef for at most ``timeout`` seconds."""
    return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)


def _error_text(exc: BaseException) -> str:
    """The message of the error an actor raised, without Ray's traceback wrapping."""
    cause = getattr(exc, "cause", None)
    if cause is not None and str(cause):
        return str(cause)
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


class RayBackend:
    """A backend whose processes (one per replica) run under named actors on a Ray cluster.

    Satisfies :class:`localai.backends.process.BackendHandle` plus its optional ``addresses``,
    ``load``, ``shared`` and ``placement``.
    """

    shared = True

    def __init__(self, address: str, model: str, name: str, argv: list[str], env: dict[str, str],
                 cwd: str | None, files: list[str], options: RayOptions, load_timeout: float):
        self.ray_address = address
        self.model = model
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.files = files
        self.options = options
        self.load_timeout = load_timeout
        self.address = ""
        self.addresses: list[str] = []
        self.placement: list[dict] = []
        self.pid = None
        self._actors: list[Any] = []
        self._watches: list[asyncio.Future] = []
        self._wait_refs: list[Any] = []
        self._exit: str | None = None

    # -- start -------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(connect, self.ray_address)
        replicas = range(self.options.replicas)
        results = await asyncio.gather(*(self._attach(i) for i in replicas), return_exceptions=True)
        attached = [r for r in results if not isinstance(r, BaseException)]
        failed = [r for r in results if isinstance(r, BaseException)]
        self._actors = [actor for actor, _ in attached]
        if failed:
            await self.stop(grace=5.0)
            raise failed[0]
        self.placement = [info for _, info in attached]
        self.addresses = [info["address"] for info in self.placement]
        self.address = self.addresses[0]
        self._watches = [asyncio.ensure_future(self._watch(actor, info)) for actor, info in attached]
        for info in self.placement:
            log.info("model %s: backend at %s on Ray node %s (%s), %d kernel(s) attached", self.model,
                     info["address"], info["node_ip"], info["node_id"][:12], info["kernels"])

    async def _attach(self, replica: int) -> tuple[Any, dict]:
        """Find or create replica ``replica``'s actor and count this kernel as its user."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        name = f"{self.name}#{replica}"
        timeout = placement_timeout()
        deadline = time.monotonic() + timeout
        actor_class = _remote_actor_class()

        def get_or_create():
            return actor_class.options(
                name=name, namespace=ray_namespace(), lifetime="detached", get_if_exists=True,
                **self.options.actor_options(),
            ).remote(self.model, self.argv, self.env, self.cwd, self.files)

        while True:
            actor = await asyncio.to_thread(get_or_create)
            left = deadline - time.monotonic()
            try:
                info = await _result(actor.attach.remote(KERNEL_ID), max(left, 0.1))
            except asyncio.TimeoutError:
                await asyncio.to_thread(ray.kill, actor, no_restart=True)
                raise LoadError(
                    f"no Ray node could take model {self.model!r} within {timeout:.0f}s "
                    f"(it asks for {self.options.describe()} per replica)"
                ) from None
            except RayTaskError as exc:  # raised in the actor: e.g. files missing on its node
                await asyncio.to_thread(ray.kill, actor, no_restart=True)
                raise LoadError(
                    f"cannot start the backend of model {self.model!r} on Ray: {_error_text(exc)}"
                ) from None
            except RayActorError:
                info = None  # an actor of that name is dying (its node was lost): its name frees soon
            if info is not None:
                return actor, info
            if time.monotonic() > deadline:
                raise LoadError(f"the Ray actor {name!r} of model {self.model!r} stays unavailable")
            await asyncio.sleep(0.2)

    # -- load --------------------------------------------------------------------------

    async def load(self, load_one: Callable[[str], Awaitable[None]]) -> None:
        """LoadModel on each replica that no other kernel has loaded (one kernel per process does)."""
        await asyncio.gather(*(self._load_replica(actor, info, load_one)
                               for actor, info in zip(self._actors, self.placement)))

    async def _load_replica(self, actor, info: dict, load_one: Callable[[str], Awaitable[None]]) -> None:
        generation = info["generation"]
        if not await actor.begin_load.remote(generation, self.load_timeout):
            info["state"] = "loaded"
            log.info("model %s at %s was already loaded by another kernel", self.model, info["address"])
            return
        ok = False
        try:
            await load_one(info["address"])
            ok = True
        finally:
            try:
                await actor.end_load.remote(generation, ok)
            except Exception:  # the actor is gone; its watch reports that
                pass
        info["state"] = "loaded"

    # -- liveness ----------------------------------------------------------------------

    async def _watch(self, actor, info: dict) -> str:
        from ray.exceptions import RayActorError

        ref = actor.wait_exit.remote(info["generation"])
        self._wait_refs.append(ref)
        try:
            how = await ref
            return f"backend process at {info['address']} ended: {how}"
        except RayActorError:
            return (f"the Ray actor running the backend at {info['address']} died "
                    f"(node {info['node_ip']} {info['node_id'][:12]} lost?)")

    def alive(self) -> bool:
        return self._exit is None and bool(self._watches) and not any(w.done() for w in self._watches)

    async def wait(self) -> int | None:
        """Return when a replica's process exits or its actor dies (the model then counts as crashed).

        This kernel's references are dropped then, so an actor whose kernels all saw the crash
        closes and gives its resources back; the next request places the model again.
        """
        if not self._watches:
            return None
        done, _ = await asyncio.wait(self._watches, return_when=asyncio.FIRST_COMPLETED)
        for watch in done:
            if not watch.cancelled() and watch.exception() is None:
                self._exit = watch.result()
                break
        else:
            self._exit = self._exit or "stopped"
            return None
        await asyncio.shield(self.stop(grace=5.0))
        return None

    def describe_exit(self) -> str:
        return self._exit or "running on Ray"

    # -- stop --------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Drop this kernel's reference on each replica; the last kernel's drop stops the process."""
        import ray

        for watch in self._watches:
            watch.cancel()
        for ref in self._wait_refs:  # the actor stops waiting for us (it may serve other kernels)
            try:
                ray.cancel(ref)
            except Exception:
                pass
        for actor in self._actors:
            try:
                last = await _result(actor.release.remote(KERNEL_ID, grace), grace + 10.0)
            except Exception as exc:  # gone already, or unreachable: nothing of ours to keep
                log.debug("release of %s failed: %s", self.model, exc)
                last = True
            if last:
                try:
                    await asyncio.to_thread(ray.kill, actor, no_restart=True)
                except Exception:
                    pass
        self._actors = []
