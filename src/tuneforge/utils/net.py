"""Outbound requests to URLs that tenants supply (feeds, web pages, webhooks) must not reach the server's own
network: without a guard, a tenant could point a "feed" at ``http://127.0.0.1:5432`` or a cloud metadata address
and read the answer back. :func:`check_public_url` refuses hosts that resolve to loopback, private, link-local,
reserved or multicast addresses; :func:`public_client` checks every request an ``httpx.Client`` sends, redirects
included. (A host whose DNS answer changes between the check and the connection is not covered.)
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from tuneforge.errors import InvalidRequestError

__all__ = ["check_public_url", "public_client"]


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []  # does not resolve: the request itself will fail with a clear error
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_public_url(url: str, *, param: str = "url") -> None:
    """Raise :class:`InvalidRequestError` unless ``url`` is http(s) and its host resolves only to public
    addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"{param}: must be an http:// or https:// URL with a host", param=param)
    for addr in _addresses(parts.hostname):
        if not addr.is_global or addr.is_multicast:
            raise InvalidRequestError(
                f"{param}: {parts.hostname} resolves to {addr}, a private or local address; the server only "
                "sends requests to public hosts (an operator can allow private ones with "
                "TUNEFORGE_ALLOW_PRIVATE_URLS=true)", param=param)


def public_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` that refuses, before connecting, any request (or redirect) to a non-public host."""

    def guard(request: httpx.Request) -> None:
        check_public_url(str(request.url))

    hooks = kwargs.pop("event_hooks", {}) or {}
    hooks = {**hooks, "request": [*hooks.get("request", []), guard]}
    return httpx.Client(event_hooks=hooks, **kwargs)
