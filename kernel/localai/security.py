"""Browser-facing guards: the Host allow-list (DNS rebinding), the Origin check (CSRF) and opt-in CORS.

Every request passes :func:`RequestGuard.check` before its body is read:

- **Host.** On a loopback bind only loopback names are served (``localhost``, ``*.localhost``,
  ``127.x.x.x``, ``[::1]``; any port) plus ``--allowed-hosts``. A page on ``evil.example`` that
  rebinds its name to 127.0.0.1 still sends ``Host: evil.example`` and gets 403. On any other bind
  the list applies when it is set.
- **Origin.** A request that carries an ``Origin`` (browsers add it to every POST, even the
  "simple" ``text/plain`` ones that need no preflight) is served only when that origin is the
  server's own (a loopback name with the server's port, or exactly the ``Host`` it asked for) or
  listed in ``--cors-allow-origins``. With no ``Origin``, ``Sec-Fetch-Site: cross-site`` is refused
  the same way. Clients that send neither (SDKs, curl) are unaffected. Plain GETs of the web UI's
  pages and ``/static/`` are exempt: they are what a link opens.
- **CORS.** Listed origins (or ``*``) get preflight answers and ``Access-Control-Allow-Origin``
  on responses, streams included. Unlisted origins get no CORS headers at all.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from quart import Quart, Response, request

from .auth import is_loopback
from .errors import APIError
from .settings import Settings

UI_PATHS = frozenset({"/", "/ui", "/favicon.ico", "/favicon.svg"})
UI_PREFIXES = ("/ui/", "/static/", "/assets/")
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = ("Authorization", "Content-Type", "X-API-Key", "Xi-Api-Key", "X-Request-ID", "OpenAI-Organization",
                 "OpenAI-Project", "OpenAI-Beta", "Anthropic-Version", "Anthropic-Beta")
PREFLIGHT_MAX_AGE = "600"


class Forbidden(APIError):
    status = 403
    type = "invalid_request_error"


def split_host(value: str) -> tuple[str, int | None]:
    """``"Name:8080"`` → ``("name", 8080)``; ``"[::1]:80"`` → ``("::1", 80)``; no port → None."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    return host.rstrip("."), int(port) if port.isdigit() else None


def is_loopback_name(host: str) -> bool:
    """A name or literal that can only mean this machine, decided without DNS."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_matches(host: str, patterns: list[str]) -> bool:
    """``*`` matches everything, ``.example.com`` / ``*.example.com`` a domain and its subdomains."""
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or pattern == host:
            return True
        suffix = pattern[1:] if pattern.startswith("*.") else pattern if pattern.startswith(".") else ""
        if suffix and (host.endswith(suffix) or host == suffix[1:]):
            return True
    return False


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped, for comparisons."""
    if value == "*":
        return value
    parts = urlsplit(value.strip().lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


class RequestGuard:
    """The three checks, configured once from the settings."""

    def __init__(self, settings: Settings):
        bind_host, self.port = settings.host_port
        self.loopback_bind = is_loopback(bind_host)
        self.allowed_hosts = [h.lower() for h in settings.allowed_hosts]
        self.cors = {normalize_origin(o) for o in settings.cors_allow_origins}

    def host_allowed(self, host_header: str) -> bool:
        if not host_header:
            return True  # HTTP/1.0 without Host: no browser sends that
        host, _ = split_host(host_header)
        if is_loopback_name(host) or host_matches(host, self.allowed_hosts):
            return True
        return not self.loopback_bind and not self.allowed_hosts

    def cors_allowed(self, origin: str) -> bool:
        return "*" in self.cors or normalize_origin(origin) in self.cors

    def same_origin(self, origin: str, host_header: str) -> bool:
        parts = urlsplit(origin.strip().lower())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        try:
            port = parts.port or {"http": 80, "https": 443}[parts.scheme]
        except ValueError:
            return False
        if is_loopback_name(parts.hostname.rstrip(".")) and port == self.port:
            return True
        own = f"{parts.scheme}://{host_header.strip().lower()}" if host_header else ""
        return bool(own) and normalize_origin(own) == normalize_origin(origin)

    def check(self, method: str, path: str, headers) -> Response | None:
        """None to go on, or the response that ends the request (a preflight answer)."""
        host_header = headers.get("Host", "")
        if not self.host_allowed(host_header):
            raise Forbidden(f"host {host_header!r} is not allowed: this server answers to loopback names and "
                            "--allowed-hosts (LOCALAI_ALLOWED_HOSTS)", code="host_not_allowed")
        origin = headers.get("Origin")
        if method in ("GET", "HEAD") and (path in UI_PATHS or path.startswith(UI_PREFIXES)):
            return None
        if origin is None:
            if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
                raise Forbidden("cross-site requests are not allowed; list the site in --cors-allow-origins "
                                "(LOCALAI_CORS_ALLOW_ORIGINS) to allow it", code="origin_not_allowed")
            return None
        if self.same_origin(origin, host_header):
            return None
        if not self.cors_allowed(origin):
            raise Forbidden(f"origin {origin!r} is not allowed; list it in --cors-allow-origins "
                            "(LOCALAI_CORS_ALLOW_ORIGINS) to allow it", code="origin_not_allowed")
        if method == "OPTIONS" and headers.get("Access-Control-Request-Method"):
            return self.preflight(origin, headers.get("Access-Control-Request-Headers", ""))
        return None

    def preflight(self, origin: str, requested: str) -> Response:
        asked = [h.strip() for h in requested.split(",") if h.strip()]
        names = list(ALLOW_HEADERS) + [h for h in asked if h.lower() not in {a.lower() for a in ALLOW_HEADERS}]
        return Response("", status=204, headers={
            "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ", ".join(names), "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"})

    def decorate(self, response: Response, origin: str | None) -> Response:
        """Add ``Access-Control-Allow-Origin`` for an allowed cross-origin request."""
        if origin and self.cors and self.cors_allowed(origin) and not self.same_origin(origin, request.host):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
            response.vary.add("Origin")
        return response


def install(app: Quart, settings: Settings) -> None:
    """Run the guard before every request (before auth and before any body is read)."""
    guard = RequestGuard(settings)
    app.extensions["localai_guard"] = guard

    @app.before_request
    async def guard_request():
        return guard.check(request.method, request.path, request.headers)

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        return guard.decorate(response, request.headers.get("Origin"))
