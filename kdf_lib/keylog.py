"""NSS key log lines, the format Wireshark and OpenSSL's SSLKEYLOGFILE use.

Format: https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/
(``CLIENT_RANDOM <64 hex> <96 hex>`` for TLS 1.2). kdf_lib only formats and parses
lines; whether a line is ever written is the service operator's explicit choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["KeyLogEntry", "find_master_secret", "format_line", "parse_line"]

_LINE = re.compile(r"CLIENT_RANDOM ([0-9a-fA-F]{64}) ([0-9a-fA-F]{96})")


@dataclass(frozen=True)
class KeyLogEntry:
    client_random: bytes
    master_secret: bytes = field(repr=False)


def format_line(client_random: bytes, master_secret: bytes) -> str:
    """One ``CLIENT_RANDOM`` line, without the newline."""
    if len(client_random) != 32 or len(master_secret) != 48:
        raise ValueError("CLIENT_RANDOM lines hold a 32-byte random and a 48-byte master secret")
    return f"CLIENT_RANDOM {client_random.hex()} {master_secret.hex()}"


def parse_line(line: str) -> KeyLogEntry | None:
    """Parse one line; comments, blank lines and TLS 1.3 labels give None."""
    match = _LINE.fullmatch(line.strip())
    if match is None:
        return None
    return KeyLogEntry(bytes.fromhex(match[1]), bytes.fromhex(match[2]))


def find_master_secret(text: str, client_random: bytes) -> bytes | None:
    """The master secret logged for ``client_random`` in a whole key log file, if any."""
    for line in text.splitlines():
        entry = parse_line(line)
        if entry is not None and entry.client_random == client_random:
            return entry.master_secret
    return None
