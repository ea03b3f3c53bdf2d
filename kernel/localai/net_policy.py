"""Which addresses a fetch that an API request asked for may reach (SSRF).

A client of the API (anyone who can reach the port, or any key holder) may make the server
download from the internet, but not from the server's own machine and networks: a URL whose host
is, or resolves to, a loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
reserved, unspecified or multicast address is refused, before any connection is made, so open
and closed ports answer the same. The operator may allow such addresses for API requests
(``--allow-private-urls``); the operator's own sources (the CLI, configured galleries,
``HF_ENDPOINT``) are not checked.

:func:`url_guard` returns the check a fetcher calls before every request, redirects included.
A host name is resolved and refused when any of its addresses is not public; a name whose DNS
answer changes between this check and the connection is not caught (SECURITY.md).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Iterable
from urllib.parse import urlsplit

Guard = Callable[[str], None]
ALLOW_HINT = "the operator may allow it with --allow-private-urls (LOCALAI_ALLOW_PRIVATE_URLS=true)"


class URLNotAllowed(Exception):
    """A fetch refused by this policy; the message names the URL and the rule, nothing fetched."""


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def host_addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` (a literal or a name) stands for; empty when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_public_url(url: str, trusted_hosts: Iterable[str] = ()) -> None:
    """Refuse ``url`` unless its host is public (or one of ``trusted_hosts``, the operator's)."""
    host = (urlsplit(url).hostname or "").lower()
    if host and host in {h.lower() for h in trusted_hosts}:
        return
    addresses = host_addresses(host) if host else []
    if not addresses:
        raise URLNotAllowed(f"{url}: could not fetch")
    if not all(is_public_address(a) for a in addresses):
        raise URLNotAllowed(f"{url}: API requests may not make the server fetch from loopback, private or "
                            f"link-local addresses; {ALLOW_HINT}")


def url_guard(trusted_hosts: Iterable[str] = ()) -> Guard:
    """The check for every request of a fetch an API request caused."""
    trusted = tuple(trusted_hosts)

    def guard(url: str) -> None:
        check_public_url(url, trusted)

    return guard
