"""Pull an image into a backend directory as one transaction: every layer is downloaded and
verified (size, digest, byte limit) into a temp dir beside the destination before any is applied."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import requests

from . import registry
from .layers import apply_layer
from .reference import OCIError, Reference
from .registry import CHUNK, RETRIES, Client, hasher, http_error, resolve

ProgressFn = Callable[[int, int], None]


def _download(client: Client, desc: dict, out: Path, state: dict, cancel, max_bytes) -> None:
    """Stream one blob to ``out``, verifying size and digest; retries restart the blob."""
    digest, size = desc["digest"], desc["size"]
    err = ""
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(registry.BACKOFF * 2 ** (attempt - 1))
        h, got = hasher(digest), 0
        try:
            resp = client.do_request(client.url("blobs", digest), "GET", stream=True,
                                     headers={"Accept-Encoding": "identity"})  # the digest is of raw bytes
            with resp, open(out, "wb") as f:
                if resp.status_code != 200:
                    raise http_error(client, f"blob {digest}", resp)
                for chunk in resp.iter_content(CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise OCIError("cancelled")
                    got += len(chunk)
                    if got > size:
                        raise OCIError(f"{client.ref}: blob {digest} is larger than its declared size {size}")
                    if max_bytes is not None and state["base"] + got > max_bytes:
                        raise OCIError(f"{client.ref}: download exceeds the limit of {max_bytes} bytes")
                    h.update(chunk)
                    f.write(chunk)
                    if state["progress"] and state["base"] + got > state["reported"]:
                        state["reported"] = state["base"] + got
                        state["progress"](state["reported"], state["total"])
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            err = f"{type(exc).__name__}: {exc}"
            continue
        if got != size:
            raise OCIError(f"{client.ref}: blob {digest} is {got} bytes, the manifest declares {size}")
        actual = f"{digest.split(':')[0]}:{h.hexdigest()}"
        if actual != digest:
            raise OCIError(f"{client.ref}: blob {digest} failed verification (content digest is {actual})")
        state["base"] += size
        return
    raise OCIError(f"{client.ref}: download of blob {digest} failed after {RETRIES} attempts: {err}")


def check_dest(dest: Path) -> None:
    if not dest.is_dir():
        raise OCIError(f"destination {dest} is not a directory")
    if any(dest.iterdir()):
        raise OCIError(f"destination {dest} is not empty")


def pull_image(ref: str, dest: Path, *, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None, max_bytes: int | None = None,
               insecure_registries: Iterable[str] = ()) -> str:
    """Pull the host-platform image ``ref`` and apply its layers into the empty dir ``dest``.

    Layers are downloaded and verified (into a temp dir beside ``dest``) before any is applied.
    Returns the top-level manifest (or index) digest.
    """
    dest = Path(dest)
    check_dest(dest)
    if cancel is not None and cancel.is_set():
        raise OCIError("cancelled")
    client = Client(Reference.parse(ref), insecure_registries=insecure_registries)
    top, layers = resolve(client)
    total = sum(layer["size"] for layer in layers)
    if max_bytes is not None and total > max_bytes:
        raise OCIError(f"{client.ref}: image layers total {total} bytes, more than the limit of {max_bytes}")
    state = {"base": 0, "reported": 0, "total": total, "progress": progress}
    if progress:
        progress(0, total)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.oci-", dir=dest.parent))
    try:
        paths = []
        for i, layer in enumerate(layers):
            paths.append(tmp / f"layer-{i}")
            _download(client, layer, paths[-1], state, cancel, max_bytes)
        for path, layer in zip(paths, layers, strict=True):
            if cancel is not None and cancel.is_set():
                raise OCIError("cancelled")
            try:
                apply_layer(path, dest)
            except OCIError as exc:
                raise OCIError(f"{client.ref}: layer {layer['digest']}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return top
