"""``tls-lab pcap``: one connection as a pcapng capture that Wireshark opens and decrypts.

Downloaded from client_svc (GET /sessions/<id>/pcap: the handshake and the records of the
connection's first messages, docs/protocol.md §2.11), or built here from a
saved session and its /message answers (the handshake and the application data), with
lab_analysis.pcap either way. ``--keylog`` adds the connection's own line of a key log file
as a Decryption Secrets Block; no other line of the file goes in. A session saved from a
client_svc with REVEAL_SECRETS=1 shows its master secret, and its line goes in unasked, as
client_svc's own capture holds it then.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from kdf_lib import keylog
from kdf_lib.prf import MASTER_SECRET_LENGTH
from lab_analysis import pcap
from lab_analysis.recorded import ExchangeError, parse_exchanges
from lab_common.contract import SESSION_PCAP, path

from .decrypt import WireRecord
from .http import ApiError, Http

__all__ = ["Capture", "PcapError", "build", "download", "keylog_line_for"]


class PcapError(Exception):
    """The capture cannot be made: unusable inputs, or no key log line for the connection."""


@dataclass(frozen=True)
class Capture:
    data: bytes
    #: Whether a Decryption Secrets Block holds the connection's key log line.
    keylog_embedded: bool
    application_records: int = 0


def keylog_line_for(keylog_text: str, client_random: bytes, where: str) -> str:
    """The key log line of the connection whose ClientHello carried ``client_random``."""
    master = keylog.find_master_secret(keylog_text, client_random)
    if master is None:
        raise PcapError(
            f"{where} has no CLIENT_RANDOM line for client_random {client_random.hex()}: was "
            "SSLKEYLOGFILE set on client_svc when the handshake ran?"
        )
    return keylog.format_line(client_random, master)


def download(
    http: Http, client_url: str, connection_id: str, keylog_text: str | None, keylog_name: str
) -> Capture:
    """GET /sessions/<connection_id>/pcap from client_svc, with the key log line added when
    ``keylog_text`` is given and the capture does not hold it yet."""
    url = client_url.rstrip("/") + path(SESSION_PCAP, connection_id)
    try:
        status, data = http("GET", url, None)
    except (OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(
            "client_svc", "GET", url, "unreachable", f"cannot reach client_svc: {reason}"
        ) from None
    if status >= 400:
        raise _api_error(url, status, data)
    try:
        embedded = pcap.holds_keylog(data)  # client_svc's Lab-Key-Log header says the same
        if keylog_text is not None and not embedded:
            line = keylog_line_for(keylog_text, pcap.client_random(data), keylog_name)
            data, embedded = pcap.with_keylog(data, line), True
    except pcap.CaptureError as exc:
        raise PcapError(f"client_svc's answer is not a capture: {exc}") from None
    return Capture(data, embedded)


def build(
    session: object,
    records: list[WireRecord],
    keylog_text: str | None,
    keylog_name: str,
) -> Capture:
    """A capture from a saved GET /sessions/<id> answer and the records of its /message
    answers (lab_cli.decrypt.load_records), with the key log line from ``keylog_text``, or
    from the session itself when client_svc revealed its secrets."""
    try:
        handshake = parse_exchanges(session)
    except ExchangeError as exc:
        raise PcapError(f"the session file: {exc}") from None
    items = []
    for record in records:
        if record.sender is None:
            raise PcapError(
                f"{record.source}: a capture needs each record's direction: give /message "
                'answers or {"direction", "record"} objects'
            )
        items.append((record.sender, record.data))
    line = None
    if keylog_text is not None:
        line = keylog_line_for(keylog_text, handshake.client_random, keylog_name)
    else:
        line = _revealed_line(session, handshake.client_random)
    try:
        data = pcap.export(handshake, items, keylog_line=line, start=time.time())
    except pcap.CaptureError as exc:
        raise PcapError(f"the records file: {exc}") from None
    return Capture(data, line is not None, len(pcap.application_records(items)))


def _revealed_line(session: object, client_random: bytes) -> str | None:
    """The key log line of a session saved from a client_svc with REVEAL_SECRETS=1, which shows
    the master secret (client_svc's own capture embeds it then too)."""
    secrets = session.get("secrets") if isinstance(session, dict) else None
    master = secrets.get("master_secret") if isinstance(secrets, dict) else None
    if not isinstance(master, str) or len(master) != 2 * MASTER_SECRET_LENGTH:
        return None
    try:
        return keylog.format_line(client_random, bytes.fromhex(master))
    except ValueError:
        return None


def _api_error(url: str, status: int, data: bytes) -> ApiError:
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict):
        return ApiError(
            "client_svc",
            "GET",
            url,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            status,
        )
    return ApiError(
        "client_svc", "GET", url, f"http_{status}", "the answer is not a JSON error", status
    )
