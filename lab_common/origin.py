"""Which requests the services take at all: the host they were sent to, the site that sent them.

Refused here, in WSGI middleware around the Flask app, before Flask reads the body, routes, runs
a hook or a view, or counts anything from the request (docs/security.md):

- a Host that is not one of the lab's names (DNS rebinding: a foreign name re-pointed at
  127.0.0.1 makes a hostile page "same-origin" with the service): 421 ``misdirected_request``
  (RFC 9110 §15.5.20); a missing (HTTP/1.1), repeated or malformed Host: 400 ``invalid_host``
  (RFC 9112 §3.2);
- a state-changing request a browser marks as cross-site (``Sec-Fetch-Site: cross-site``, or an
  ``Origin`` whose host is not one of the lab's names, ``Origin: null`` included): 403
  ``cross_site_request``. A plain HTML form or ``fetch(..., {mode: "no-cors"})`` can send such a
  POST from any page without a CORS preflight, and an empty body is a valid request here.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson
from werkzeug.wrappers import Response

from .errors import HTTP_CODES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("lab")

#: The lab's own names, always allowed: the loopback, and the compose services that carry a
#: request to either service (docker-compose.yml; ``proxy`` is the HAProxy in front of both,
#: which passes the client's Host on and checks health with ``Host: localhost``).
DEFAULT_ALLOWED_HOSTS = (
    "localhost",
    "127.0.0.1",
    "[::1]",
    "server",
    "client",
    "mitm",
    "client-mitm",
    "proxy",
)
#: Methods that change nothing (RFC 9110 §9.2.1); every other one is checked for its site.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MISDIRECTED = HTTP_CODES[421]
INVALID_HOST = "invalid_host"
CROSS_SITE = "cross_site_request"

# reg-name as DNS and Docker spell names (RFC 3986 §3.2.2 allows more, which no name here needs).
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_PORT = re.compile(r"[0-9]{0,5}")
# A name is at most 253 characters; with brackets, an address and a port no Host is longer.
_MAX_HOST_CHARS = 300


def normalize_host(value: str) -> str | None:
    """``host[:port]`` as compared with the allow-list: lower case, no port, no trailing dot,
    an IPv6 literal in brackets in its compressed form. None when it is not a valid host."""
    if not value or len(value) > _MAX_HOST_CHARS or not value.isascii():
        return None
    text = value.lower()
    if text.startswith("["):
        literal, bracket, rest = text[1:].partition("]")
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        if not bracket or address.scope_id is not None:
            return None
        host = f"[{address.compressed}]"
    else:
        name, colon, port = text.partition(":")
        host = name.removesuffix(".")
        if not _NAME.fullmatch(host):
            return None
        rest = colon + port
    # The port is not compared: the services are reached on several (compose, the proxy, tests).
    if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
        return None
    return host


def allowed_hosts(extra: str | Iterable[str] = "") -> frozenset[str]:
    """DEFAULT_ALLOWED_HOSTS and ``extra`` (the ALLOWED_HOSTS setting: comma-separated names,
    with or without a port; an IPv6 address with or without brackets).

    Raises:
        ValueError: an entry is not a valid host.
    """
    entries = extra.split(",") if isinstance(extra, str) else list(extra)
    hosts = set()
    for entry in (*DEFAULT_ALLOWED_HOSTS, *entries):
        entry = entry.strip()
        if not entry:
            continue
        if entry.count(":") > 1 and not entry.startswith("["):
            entry = f"[{entry}]"  # a bare IPv6 address
        host = normalize_host(entry)
        if host is None:
            raise ValueError(f"ALLOWED_HOSTS: {entry!r} is not a host name or address")
        hosts.add(host)
    return frozenset(hosts)


class RequestGuard:
    """WSGI middleware: refuses misdirected and cross-site requests before ``app`` sees them.

    ``on_refusal(method, status, code)`` is told of each refusal (the app's metrics). Neither
    it nor the log is given the Host or Origin value: they are the attacker's text.
    """

    def __init__(
        self,
        app: WSGIApplication,
        hosts: frozenset[str],
        on_refusal: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.on_refusal = on_refusal

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        refusal = self.host_refusal(environ) or self.site_refusal(environ)
        if refusal is None:
            return self.app(environ, start_response)
        status, code, message = refusal
        method = str(environ.get("REQUEST_METHOD", ""))
        if self.on_refusal is not None:
            self.on_refusal(method, status, code)
        log.info("request refused", extra={"event": "refused", "code": code, "status": status})
        body = orjson.dumps({"error": {"code": code, "message": message}}) + b"\n"
        response = Response(body, status, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)

    def host_refusal(self, environ: WSGIEnvironment) -> tuple[int, str, str] | None:
        raw = environ.get("HTTP_HOST")
        if raw is None:
            # HTTP/1.0 may leave Host out (the connection names the server); 1.1 must send it,
            # and a browser always does.
            if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
                return None
            return 400, INVALID_HOST, "an HTTP/1.1 request must have a Host header"
        host = normalize_host(str(raw))
        if host is None:
            # A repeated Host arrives joined with a comma, which no host contains.
            return 400, INVALID_HOST, "the Host header is not one valid host[:port]"
        if host not in self.hosts:
            return (
                421,
                MISDIRECTED,
                "this service does not answer for that host name; use localhost or 127.0.0.1, "
                "or add the name to ALLOWED_HOSTS",
            )
        return None

    def site_refusal(self, environ: WSGIEnvironment) -> tuple[int, str, str] | None:
        if environ.get("REQUEST_METHOD") in SAFE_METHODS:
            return None
        fetch_site = str(environ.get("HTTP_SEC_FETCH_SITE", "")).strip().lower()
        origin = environ.get("HTTP_ORIGIN")
        # "same-site" alone decides nothing, Origin's host does: a browser says same-site of a
        # page on another port of this machine (served: its host is ours) and of a page on a
        # sibling subdomain of an ALLOWED_HOSTS name (refused: its host is not).
        if fetch_site == "cross-site" or (origin is not None and not self._our_origin(origin)):
            return (
                403,
                CROSS_SITE,
                "a page of another site cannot send this request; use the lab's own page, "
                "the CLI or curl",
            )
        return None

    def _our_origin(self, origin: str) -> bool:
        """``scheme://host[:port]`` with one of our hosts (RFC 6454 §7); ``null`` is not."""
        scheme, separator, authority = origin.strip().partition("://")
        if not separator or scheme.lower() not in ("http", "https"):
            return False
        return normalize_host(authority) in self.hosts
