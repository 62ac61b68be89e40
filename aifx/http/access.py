"""Who may call what: bearer tokens, loopback-only routes without tokens, allowed hosts, same-site POSTs.

Without tokens (development and test only) the admin and outcome routes answer loopback clients
only, and only under an allowed Host name: a web page that rebinds its own DNS name to 127.0.0.1
reaches the loopback address, but its requests carry its own name in Host.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

from aifx.serving.errors import Forbidden, Unauthorized
from aifx.settings import Settings

Scope = Mapping[str, Any]
FORWARDED = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def check_admin(settings: Settings, scope: Scope) -> None:
    """Admin routes: `Authorization: Bearer <AIFX_ADMIN_TOKEN>`, or without a token a local caller only."""
    tokens = settings.tokens(outcome=False)
    if not tokens:
        _local_only(settings, scope, "admin")
        return
    given = bearer(header(scope, b"authorization"))
    if given is None:
        raise Unauthorized("admin route: send the header `Authorization: Bearer <AIFX_ADMIN_TOKEN>`")
    if not matches(given, tokens):
        raise Forbidden("admin route: the bearer token is not AIFX_ADMIN_TOKEN")


def check_outcome(settings: Settings, scope: Scope) -> None:
    """Outcome routes: AIFX_OUTCOME_TOKEN or AIFX_ADMIN_TOKEN, or without either a local caller only."""
    tokens = settings.tokens(outcome=True)
    if not tokens:
        _local_only(settings, scope, "outcome")
        return
    given = bearer(header(scope, b"authorization"))
    if given is None:
        raise Unauthorized(
            "outcome route: send the header `Authorization: Bearer <AIFX_OUTCOME_TOKEN>` (the admin token works too)"
        )
    if not matches(given, tokens):
        raise Forbidden("outcome route: the bearer token is neither AIFX_OUTCOME_TOKEN nor AIFX_ADMIN_TOKEN")


def is_trusted(settings: Settings, authorization: str | None) -> bool:
    """True when the caller presents the outcome or admin token: its candles may resolve outcomes."""
    given = bearer(authorization)
    tokens = settings.tokens(outcome=True)
    return bool(tokens) and given is not None and matches(given, tokens)


def is_admin(settings: Settings, authorization: str | None) -> bool:
    """True when the caller presents the admin token (never when none is set)."""
    given = bearer(authorization)
    tokens = settings.tokens(outcome=False)
    return bool(tokens) and given is not None and matches(given, tokens)


def token_identity(settings: Settings, authorization: str | None) -> str | None:
    """'admin' or 'outcome' for a valid token, else None: an invalid bearer is no identity of its own."""
    if bearer(authorization) is None:
        return None
    if is_admin(settings, authorization):
        return "admin"
    return "outcome" if is_trusted(settings, authorization) else None


def check_same_site(settings: Settings, scope: Scope) -> None:
    """Admin and outcome POSTs sent by a web page of another site are refused (403), token or not.

    Browsers mark such requests: `Sec-Fetch-Site: cross-site|same-site`, older ones an `Origin` of
    another host. `same-origin` and an Origin equal to Host are not enough alone: after DNS rebinding
    a foreign page is "same-origin" under its own name, so that name must be an allowed host too.
    Command-line and server clients send neither header and are not affected.
    """
    site = (header(scope, b"sec-fetch-site") or "").strip().lower()
    origin = header(scope, b"origin")
    host = (header(scope, b"host") or "").strip().lower()
    foreign_origin = origin is not None and (origin.strip().lower() == "null" or _netloc(origin) != host)
    browser = site in ("same-origin", "same-site", "cross-site") or origin is not None
    if site in ("cross-site", "same-site") or foreign_origin or (browser and not host_allowed(settings, scope)):
        raise Forbidden(
            "requests from a web page of another site are refused on admin and outcome routes; "
            "call the API from a server or the command line"
        )


def host_allowed(settings: Settings, scope: Scope) -> bool:
    """Whether the request's Host (without port) is in AIFX_ALLOWED_HOSTS ("*": any)."""
    hosts = settings.hosts
    return "*" in hosts or host_name(header(scope, b"host") or "") in hosts


def host_name(host: str) -> str:
    """A Host header's name: lower case, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def client_address(settings: Settings, scope: Scope) -> str:
    """The caller's address: the peer, or from a trusted proxy the last untrusted X-Forwarded-For entry."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    proxies = _networks(settings.trusted_proxies)
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in (header(scope, b"x-forwarded-for") or "").split(",") if h.strip()]
    for hop in reversed(hops):  # the right end was added by our proxies; the left end by anyone
        if not _within(hop, proxies):
            return hop
    return hops[0] if hops else peer


def is_loopback(scope: Scope) -> bool:
    """A caller on this machine, directly: a loopback peer, and no proxy forwarded the request."""
    if any(header(scope, name) is not None for name in FORWARDED):
        return False  # a reverse proxy (on this machine or not): its clients are elsewhere
    try:
        return ip_address(str((scope.get("client") or ("", 0))[0])).is_loopback
    except ValueError:
        return False


def is_local_operator(settings: Settings, scope: Scope) -> bool:
    """Without an admin token: a direct local caller under an allowed host (who may call the admin routes)."""
    return not settings.tokens(outcome=False) and host_allowed(settings, scope) and is_loopback(scope)


def _local_only(settings: Settings, scope: Scope, kind: str) -> None:
    token = "AIFX_ADMIN_TOKEN" if kind == "admin" else "AIFX_OUTCOME_TOKEN or AIFX_ADMIN_TOKEN"
    if not host_allowed(settings, scope):
        name = host_name(header(scope, b"host") or "")
        raise Forbidden(
            f"{kind} route: without {token} it answers only to the host names of AIFX_ALLOWED_HOSTS "
            f"({', '.join(sorted(settings.hosts))}), not {name[:100]!r}"
        )
    if not is_loopback(scope):
        raise Forbidden(
            f"{kind} route: without {token} set it answers loopback clients (127.0.0.1, ::1) only; "
            f"set {token.split(' ')[0]} to call it from another machine"
        )


def header(scope: Scope, name: bytes) -> str | None:
    """The first header called name (lower-case bytes), decoded, or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    scheme, _, given = (authorization or "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def matches(given: str, tokens: Sequence[str]) -> bool:
    """Constant time: fixed-length digests (length hidden too), every token compared."""
    digest = _digest(given)
    found = False
    for token in tokens:
        found |= hmac.compare_digest(digest, _digest(token))
    return found


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin.strip()).netloc.lower()
    except ValueError:
        return ""


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(p, strict=False) for p in proxies)


def _within(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
