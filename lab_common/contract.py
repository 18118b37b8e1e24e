"""The lab's HTTP contract in one place: every path, the connection-id format and the limits.

Both services route by these names, the OpenAPI documents publish them, and tls-lab, bench
and the tests call them. No Flask here, so the command-line tools can import it cheaply.
"""

from __future__ import annotations

import functools
import re
import secrets
import socket
from typing import TypeGuard
from urllib.parse import quote

from kdf_lib.messages import MAX_FINISHED_RECORD

__all__ = [
    "ALERT",
    "CAPTURE_HEADER",
    "CONNECTION_HEADER",
    "CONNECTION_ID_BYTES",
    "CONNECTION_ID_LENGTH",
    "CONNECTION_ID_PATTERN",
    "DEMO_FORWARD_SECRECY",
    "DEMO_MISMATCH",
    "DEMO_MITM",
    "DEMO_MTLS",
    "DEMO_PRIVATE_KEY",
    "DEMO_RESUMPTION",
    "DEMO_TAMPER",
    "FINISH",
    "HANDSHAKE",
    "HEALTH",
    "HEALTHCHECK_USER_AGENT",
    "HELLO",
    "KEY_LOG_HEADER",
    "MAX_CAPTURED_BYTES",
    "MAX_CAPTURED_MESSAGES",
    "MAX_FINISHED_RECORD",
    "MAX_PLAINTEXT_CHARS",
    "MAX_RECORDS_PER_REQUEST",
    "MAX_RECORD_BYTES",
    "MESSAGE",
    "METRICS",
    "MIN_REPLY_FRAGMENT",
    "NOT_PROCESSED_CODES",
    "OPENAPI",
    "PAGE",
    "PCAP_MEDIA_TYPE",
    "PRF_CALCULATOR",
    "RECORDS",
    "RECORDS_MEDIA_TYPE",
    "REPLICA_HEADER",
    "SESSION",
    "SESSION_ID_PATTERN",
    "SESSION_PCAP",
    "is_connection_id",
    "is_session_id",
    "new_connection_id",
    "path",
    "replica_name",
    "route",
]

# Paths. A template with ``{connection_id}`` is written as OpenAPI writes it; ``route``
# gives Flask's form and ``path`` fills it in for a call.

#: client_svc: run a handshake against server_svc.
HANDSHAKE = "/handshake"
#: server_svc: the ClientHello in, the server's flight out.
HELLO = "/handshake/hello"
#: server_svc: the client's finish in, the server's Finished out.
FINISH = "/handshake/finish"
#: server_svc: a client's alert (RFC 5246 §7.2).
ALERT = "/alert"
#: Both services: application data (client_svc: plaintext; server_svc: records as base64).
MESSAGE = "/message"
#: server_svc: /message in binary, complete TLS records as the body both ways.
RECORDS = "/records/{connection_id}"
#: Both services: what each derived and recorded for one connection.
SESSION = "/sessions/{connection_id}"
#: client_svc: one connection as a pcapng capture for Wireshark (lab_analysis.pcap).
SESSION_PCAP = "/sessions/{connection_id}/pcap"
#: Both services: the OpenAPI 3.1 document.
OPENAPI = "/openapi.json"
#: Both services: liveness.
HEALTH = "/healthz"
#: The User-Agent of HAProxy's health checks in the compose stack (haproxy/haproxy.cfg); their
#: requests are left out of the services' logs.
HEALTHCHECK_USER_AGENT = "tls-lab-healthcheck"
#: Both services: Prometheus metrics.
METRICS = "/metrics"
#: client_svc: the live page.
PAGE = "/"
#: client_svc: the live page's PRF calculator (P_hash round by round).
PRF_CALCULATOR = "/api/prf"
#: client_svc: the demos (docs/demos.md).
DEMO_FORWARD_SECRECY = "/demo/forward-secrecy"
DEMO_TAMPER = "/demo/tamper"
DEMO_MISMATCH = "/demo/mismatch"
DEMO_MITM = "/demo/mitm"
DEMO_RESUMPTION = "/demo/resumption"
DEMO_MTLS = "/demo/mtls"
#: server_svc: its private key, for the forward-secrecy demo (only with REVEAL_SECRETS).
DEMO_PRIVATE_KEY = "/demo/private-key"

# The connection id: server_svc names each connection with 16 random bytes in lowercase hex.

CONNECTION_ID_BYTES = 16
CONNECTION_ID_LENGTH = 2 * CONNECTION_ID_BYTES
#: The connection id's pattern, unanchored (OpenAPI anchors it; ``is_connection_id`` matches
#: the whole string).
CONNECTION_ID_PATTERN = f"[0-9a-f]{{{CONNECTION_ID_LENGTH}}}"
_CONNECTION_ID = re.compile(CONNECTION_ID_PATTERN)

# A session id, as client_svc's POST /handshake takes it in "resume": 1 to 32 bytes
# (RFC 5246 §7.4.1.2) in lowercase hex.

SESSION_ID_PATTERN = "(?:[0-9a-f]{2}){1,32}"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)

# Limits.

#: The binary form of /message: complete TLS records as the request and response body.
RECORDS_MEDIA_TYPE = "application/tls-records"
#: A server_svc /message body holds at most this much record data (the request size limit
#: applies too).
MAX_RECORD_BYTES = 8 * 1024 * 1024
#: The echo's reply starts with this line, then the plaintext received (docs/protocol.md §1.4);
#: client_svc checks it in every reply.
ECHO_HEADER = "server_svc received {bytes} bytes in records {first}..{last}: "
#: The smallest reply fragment a client may ask for: RFC 6066 §4's smallest max_fragment_length.
#: Smaller pieces would let one request make the server seal a record per few bytes.
MIN_REPLY_FRAGMENT = 512
#: The capture SESSION_PCAP answers: pcapng has no IANA registration; this is the type
#: shared-mime-info gives it (application/vnd.tcpdump.pcap is the older pcap format).
PCAP_MEDIA_TYPE = "application/x-pcapng"
#: SESSION_PCAP's answer says whether the capture holds the key log line ("embedded": the
#: operator set REVEAL_SECRETS=1) or not ("absent").
KEY_LOG_HEADER = "Lab-Key-Log"
#: SESSION_PCAP's answer says whether the capture holds every message the connection carried
#: ("complete") or only the first ones ("truncated"): client_svc keeps the records of at most
#: MAX_CAPTURED_MESSAGES messages and MAX_CAPTURED_BYTES bytes of them per connection.
CAPTURE_HEADER = "Lab-Capture"
#: A connection's records cost its store memory for CONNECTION_TTL (in Redis, a read with every
#: message): 256 KiB for each of MAX_CONNECTIONS at most, of ciphertext a caller chose.
MAX_CAPTURED_MESSAGES = 32
MAX_CAPTURED_BYTES = 256 * 1024
#: The most records one /message or /records body may carry. Each record costs the server
#: several microseconds whatever its size, so 4 MiB of empty records (145,000) would cost it
#: 0.6 to 1.6 s of CPU. A MAX_BODY_LIMIT message in full records needs 512; in MIN_REPLY_FRAGMENT
#: pieces, a default MAX_BODY_BYTES one needs 7,900. Counted from the headers, before any
#: record is opened: a body over it moves no sequence number.
MAX_RECORDS_PER_REQUEST = 8192
#: The plaintext limit for one client_svc /message call (it is split into 2^14-byte records).
MAX_PLAINTEXT_CHARS = 2 * 1024 * 1024


#: server_svc's 5xx codes that mean it changed nothing: its state store could not be reached
#: or the connection was held by another request (lab_common.redis_state). Like a 4xx, the
#: request was not processed.
NOT_PROCESSED_CODES = frozenset({"state_unavailable", "connection_busy"})

#: client_svc names the connection of each call to server_svc in this header, so that a load
#: balancer can keep a connection's requests on one replica (haproxy/haproxy.cfg).
CONNECTION_HEADER = "Lab-Connection"

#: Every answer of both services names the replica that made it (docs/scaling.md).
REPLICA_HEADER = "Lab-Replica"


@functools.cache
def replica_name() -> str:
    """This process's replica name: its host name (in compose, the container's id), read once:
    every request's trace steps name it."""
    return socket.gethostname()


def route(template: str) -> str:
    """A path template in Flask's form: ``/sessions/{connection_id}`` → ``/sessions/<connection_id>``."""
    return re.sub(r"\{(\w+)\}", r"<\1>", template)


def path(template: str, connection_id: str) -> str:
    """The path to call: ``template`` with ``connection_id`` filled in (percent-encoded)."""
    return template.format(connection_id=quote(connection_id, safe=""))


def is_connection_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a connection id: exactly CONNECTION_ID_LENGTH lowercase hex digits."""
    return isinstance(value, str) and _CONNECTION_ID.fullmatch(value) is not None


def is_session_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a session id in lowercase hex (1 to 32 bytes)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def new_connection_id() -> str:
    """A fresh, unguessable connection id.

    From the OS CSPRNG on every call: nothing is seeded per process, so forked workers never
    repeat one another's ids.
    """
    return secrets.token_hex(CONNECTION_ID_BYTES)
