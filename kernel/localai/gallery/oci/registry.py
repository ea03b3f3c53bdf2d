"""The registry client: the v2 API over oras-py with timeouts and short retries, manifests and
image indexes (verified against their digests), the host platform's image, remote digests.

Every registry HTTP call goes through :class:`oras.provider.Registry`; its own retry decorator
(5 tries, minutes of sleep, no timeouts) is replaced by short retries with timeouts.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable

import oras.container
import oras.provider
import requests
import requests.adapters

from .reference import DIGEST_RE, OCIError, Reference, insecure_registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
}

TIMEOUT = (5.0, 60.0)  # (connect, read) seconds for every request
RETRIES = 3  # attempts for connection errors, timeouts, 5xx and 429
BACKOFF = 0.25  # seconds, doubled each retry
CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20
_RAW_DO_REQUEST = oras.provider.Registry.do_request.__wrapped__  # without oras' slow retry loop


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Default timeouts; ``guard`` (see :mod:`localai.net_policy`) checks every request's URL,
    redirects and token realms included."""

    def __init__(self, guard=None):
        super().__init__()
        self.guard = guard

    def send(self, request, **kwargs):
        if self.guard is not None:
            self.guard(request.url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT
        return super().send(request, **kwargs)


class Client(oras.provider.Registry):
    """oras Registry with request timeouts and short retries on transient errors; plain http
    for loopback registries and those in ``insecure_registries``."""

    def __init__(self, ref: Reference, guard=None, insecure_registries: Iterable[str] = ()):
        super().__init__(hostname=ref.api_host, insecure=insecure_registry(ref.registry, insecure_registries))
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _TimeoutAdapter(guard))
        self.ref = ref
        c = oras.container.Container("placeholder", registry=ref.api_host)
        c.namespace, _, c.repository = ref.repository.rpartition("/")
        c.namespace = c.namespace or None
        c.tag, c.digest = ref.tag or "latest", ref.digest
        self.container = c
        try:  # credentials from ~/.docker/config.json, as oras' own get_manifest/pull do
            self.auth.load_configs(c)
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):
        err = ""
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                resp = _RAW_DO_REQUEST(self, url, method, data=data, headers=dict(headers or {}),
                                       json=json, stream=stream)
            except requests.exceptions.SSLError as exc:
                raise OCIError(f"{self.ref}: TLS error talking to {self.ref.registry} ({exc}); "
                               "for a plain-http registry add it to LOCALAI_INSECURE_REGISTRIES") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                err = f"{type(exc).__name__}: {exc}"
                continue
            except ValueError as exc:  # oras: cannot authenticate
                raise OCIError(f"{self.ref}: {method} {url}: {exc}") from exc
            if resp.status_code >= 500 or resp.status_code == 429:
                err = f"HTTP {resp.status_code}"
                resp.close()
                continue
            return resp
        raise OCIError(f"{self.ref}: {method} {url} failed after {RETRIES} attempts: {err}")

    def url(self, kind: str, ref: str) -> str:
        base = self.container.manifest_url(ref) if kind == "manifests" else self.container.get_blob_url(ref)
        return f"{self.prefix}://{base}"


def http_error(client: Client, what: str, resp: requests.Response) -> OCIError:
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError, TypeError):
        pass
    reason = {401: "authentication required", 403: "access denied", 404: "not found"}.get(resp.status_code, "")
    msg = f"{client.ref}: {what}: HTTP {resp.status_code} {reason}".rstrip()
    return OCIError(f"{msg} ({detail})" if detail else msg)


def hasher(digest: str):
    return hashlib.new(digest.split(":", 1)[0])


def check_descriptor(client_ref, desc, what: str) -> tuple[str, int]:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise OCIError(f"{client_ref}: {what} has an invalid or unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OCIError(f"{client_ref}: {what} {digest} has an invalid size {size!r}")
    return digest, size


def get_manifest(client: Client, ref: str, expect: str | None = None) -> tuple[str, dict, str]:
    """GET a manifest by tag or digest; returns (digest, parsed body, media type)."""
    resp = client.do_request(client.url("manifests", ref), "GET", headers={"Accept": ACCEPT}, stream=True)
    with resp:
        if resp.status_code != 200:
            raise http_error(client, f"manifest {ref}", resp)
        body = bytearray()
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > MAX_MANIFEST:
                raise OCIError(f"{client.ref}: manifest {ref} is larger than {MAX_MANIFEST} bytes")
        body = bytes(body)
        header = resp.headers.get("Docker-Content-Digest")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
    want = expect or (ref if DIGEST_RE.match(ref) else None)
    want = want or (header if header and DIGEST_RE.match(header) else None)
    if want:
        h = hasher(want)
        h.update(body)
        got = f"{want.split(':')[0]}:{h.hexdigest()}"
        if got != want:
            raise OCIError(f"{client.ref}: manifest {ref} does not match its digest {want} (got {got})")
        digest = want
    else:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise OCIError(f"{client.ref}: manifest {ref} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise OCIError(f"{client.ref}: manifest {ref} is not a JSON object")
    return digest, doc, doc.get("mediaType") or ctype


def host_platform() -> tuple[str, str]:
    m = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}.get(m, m)
    return "linux", arch


def pick_platform(where, manifests: list) -> dict:
    """Choose the index entry for the host platform (a lone entry without platform is fine)."""
    if not isinstance(manifests, list) or not manifests:
        raise OCIError(f"{where}: image index lists no manifests")
    want_os, want_arch = host_platform()
    usable = [m for m in manifests if isinstance(m, dict)
              and (m.get("platform") or {}).get("os") != "unknown"]  # skip attestations
    for m in usable:
        p = m.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch:
            return m
    if len(usable) == 1 and not usable[0].get("platform"):
        return usable[0]
    have = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                   for m in usable})
    raise OCIError(f"{where}: no image for {want_os}/{want_arch} (index has: {', '.join(have) or 'none'})")


def is_index(doc: dict, mtype: str) -> bool:
    return mtype in (OCI_INDEX, DOCKER_LIST) or ("manifests" in doc and "layers" not in doc)


def image_manifest(where, doc: dict, mtype: str) -> list[dict]:
    """Validate an image manifest (OCI or Docker v2) and return its layer descriptors."""
    if doc.get("schemaVersion") != 2:
        raise OCIError(f"{where}: unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise OCIError(f"{where}: manifest ({mtype or 'no media type'}) has no layers list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise OCIError(f"{where}: layer {i} is not an object")
        check_descriptor(where, layer, f"layer {i}")
        lt = layer.get("mediaType", "")
        if lt and lt not in LAYER_TYPES:
            raise OCIError(f"{where}: layer {layer['digest']} has unsupported media type {lt!r}")
    return layers


def resolve(client: Client) -> tuple[str, list[dict]]:
    """Top-level digest and the layer list of the host-platform image."""
    ref = client.ref
    top, doc, mtype = get_manifest(client, ref.digest or ref.tag or "latest")
    for _ in range(3):
        if not is_index(doc, mtype):
            return top, image_manifest(ref, doc, mtype)
        entry = pick_platform(ref, doc.get("manifests"))
        digest, _ = check_descriptor(ref, entry, "index entry")
        _, doc, mtype = get_manifest(client, digest, expect=digest)
    raise OCIError(f"{ref}: image indexes nested too deeply")


def remote_digest(ref: str, insecure_registries: Iterable[str] = ()) -> str:
    """Digest of the manifest or index ``ref`` points at (what :func:`pull_image` returns)."""
    r = Reference.parse(ref)
    client = Client(r, insecure_registries=insecure_registries)
    target = r.digest or r.tag or "latest"
    resp = client.do_request(client.url("manifests", target), "HEAD", headers={"Accept": ACCEPT})
    with resp:
        if resp.status_code != 200:
            raise http_error(client, f"manifest {target}", resp)
        header = resp.headers.get("Docker-Content-Digest", "")
    if r.digest:
        return r.digest
    if DIGEST_RE.match(header):
        return header
    return get_manifest(client, target)[0]
