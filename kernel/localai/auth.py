"""API keys (LocalAI's legacy keys): ``LOCALAI_API_KEY`` / ``--api-keys``.

A key is accepted as ``Authorization: Bearer <key>`` (or a bare ``Authorization`` value),
``x-api-key`` or ``xi-api-key``, compared in constant time against every configured key.
Health probes, ``/openapi.json`` and the web UI's pages and static files stay public; everything
else answers 401 in the OpenAI error shape. With no keys configured, everything is open.
An accepted key's identity (a digest, never the key) is the request's :func:`caller`, for state kept
per key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket

from quart import Quart, g, request

from .errors import APIError, ConfigError
from .settings import Settings

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/", "/ui", "/favicon.ico", "/favicon.svg"})
PUBLIC_PREFIXES = ("/ui/", "/static/", "/assets/")
PUBLIC_METHODS = frozenset({"GET", "HEAD"})


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"

    def __init__(self, message: str, type: str | None = None):
        super().__init__(message, type=type, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def is_public(method: str, path: str) -> bool:
    """Health probes and the UI's HTML/static files need no key (GET/HEAD only)."""
    return method in PUBLIC_METHODS and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def presented_key(headers) -> str | None:
    """The key from ``Authorization`` (Bearer or bare), ``x-api-key`` or ``xi-api-key``."""
    authorization = headers.get("Authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else authorization
    return headers.get("x-api-key") or headers.get("xi-api-key")


def key_matches(given: str, keys: list[str]) -> bool:
    """Constant-time comparison against every key (no early exit on a match); comparing
    SHA-256 digests keeps the keys' lengths from showing in the timing too."""
    given_digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_digest, hashlib.sha256(key.encode("utf-8")).digest())
    return matched


def key_identity(key: str) -> str:
    """A stable identity for ``key`` that does not reveal it (a domain-separated SHA-256)."""
    return hashlib.sha256(b"localai-api-key\0" + key.encode("utf-8", "surrogateescape")).hexdigest()


def caller() -> str | None:
    """The identity of the key this request presented; ``None`` when the server has no keys."""
    return g.get("api_key_identity")


def install(app: Quart, settings: Settings) -> None:
    """Require an API key on every non-public route when keys are configured."""
    keys = list(settings.api_keys)
    if not keys:
        return

    @app.before_request
    async def require_api_key() -> None:
        if is_public(request.method, request.path):
            return
        given = presented_key(request.headers)
        if not given:
            raise Unauthorized("An authentication key is required")
        if not key_matches(given, keys):
            raise Unauthorized("Invalid API key", type="authentication_error")
        g.api_key_identity = key_identity(given)


def is_loopback(host: str) -> bool:
    """True when ``host`` (an IP or a name) only reaches this machine."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without API keys unless explicitly allowed, and
    CORS for every origin on a non-loopback address without keys in any case."""
    host, port = settings.host_port
    if "*" in settings.cors_allow_origins and not settings.api_keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to allow CORS from every origin ('*') on {host}:{port} without an API key: any web page "
            "could use the server. Set LOCALAI_API_KEY (or --api-keys), list the origins in --cors-allow-origins, "
            "or bind to 127.0.0.1."
        )
    if settings.api_keys or settings.allow_insecure_bind or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host}:{port} without an API key: anyone who can reach this address could use "
        "the server. Set LOCALAI_API_KEY (or --api-keys), bind to 127.0.0.1, or pass --allow-insecure-bind "
        "(LOCALAI_ALLOW_INSECURE_BIND=true) if the network is trusted."
    )
