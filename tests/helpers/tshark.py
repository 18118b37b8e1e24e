"""Wireshark as a second, independent TLS 1.2 implementation: Debian's ``tshark`` (scripts/test
installs it) dissects a capture and says what it found: each record and handshake message,
every malformed packet and expert finding, and the application data it decrypted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
RUN_WITHIN_S = 60

#: Wireshark's expert severities (epan/proto.h PI_*): a warning or worse is a finding.
PI_WARN = 0x00600000

Pairs = list[tuple[str, Any]]


def require_tshark() -> None:
    """Skip with a reason where tshark is missing and LAB_SKIP_COMPOSE=1 (a laptop); fail
    elsewhere: in CI the capture must be judged."""
    if Path(TSHARK).is_file():
        return
    if os.environ.get("LAB_SKIP_COMPOSE") == "1":
        pytest.skip("tshark is not installed (apt-get install tshark)")
    pytest.fail("tshark is not installed: apt-get install tshark", pytrace=False)


@dataclass
class Frame:
    number: int
    source: str
    #: TLS handshake types, in order (decrypted ones included: Finished is 20).
    handshake_types: list[int] = field(default_factory=list)
    content_types: list[int] = field(default_factory=list)
    #: Decrypted application data Wireshark handed on (``data.data``).
    data: bytes = b""
    comment: str = ""


@dataclass
class Dissection:
    frames: list[Frame]
    #: Malformed packets and expert findings of severity warning or worse, described.
    problems: list[str]

    @property
    def handshake_types(self) -> list[int]:
        return [t for f in self.frames for t in f.handshake_types]

    def data_from(self, source: str) -> bytes:
        """The application data decrypted from ``source``'s records, in order."""
        return b"".join(f.data for f in self.frames if f.source == source)


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) below ``node``: objects are lists of pairs (tshark repeats keys)."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, tuple):
                yield item
                yield from _walk(item[1])
            else:
                yield from _walk(item)


def _values(node: Any, name: str) -> list[Any]:
    return [value for key, value in _walk(node) if key == name]


def dissect(capture: Path, *, keylog_file: Path | None = None) -> Dissection:
    """``tshark`` on ``capture`` with its own empty profile: two passes (reassembly across TCP
    segments and records), checksums verified, HTTP off (the lab's plaintext is not HTTP), and
    only the capture's own Decryption Secrets Block unless ``keylog_file`` is given."""
    require_tshark()
    profile = capture.parent / "wireshark-profile"
    profile.mkdir(exist_ok=True)
    command = [
        TSHARK, "-r", str(capture), "-2", "-T", "json",
        "--disable-protocol", "http",
        "-o", f"tls.keylog_file:{keylog_file or ''}",
        "-o", "ip.check_checksum:TRUE",
        "-o", "tcp.check_checksum:TRUE",
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-o", "tls.desegment_ssl_records:TRUE",
        "-o", "tls.desegment_ssl_application_data:TRUE",
    ]  # fmt: skip
    env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(profile), "HOME": str(profile)}
    done = subprocess.run(
        command, capture_output=True, timeout=RUN_WITHIN_S, env=env, check=False, text=True
    )
    assert done.returncode == 0, done.stderr
    packets: list[Pairs] = json.loads(done.stdout, object_pairs_hook=lambda pairs: pairs)
    frames, problems = [], []
    for packet in packets:
        layers = _values(packet, "layers")[0]
        number = int(_values(layers, "frame.number")[0])
        (source,) = _values(layers, "ip.src")
        frame = Frame(number, source)
        frame.handshake_types = [int(v) for v in _values(layers, "tls.handshake.type")]
        frame.content_types = [int(v) for v in _values(layers, "tls.record.content_type")]
        frame.data = b"".join(
            bytes.fromhex(v.replace(":", "")) for v in _values(layers, "data.data")
        )
        frame.comment = ";".join(str(v) for v in _values(layers, "frame.comment"))
        frames.append(frame)
        if _values(layers, "_ws.malformed"):
            problems.append(f"frame {number}: malformed packet")
        for expert in _values(layers, "_ws.expert"):
            fields = dict(expert) if isinstance(expert, list) else {}
            severity = int(fields.get("_ws.expert.severity", 0))
            if severity >= PI_WARN:
                problems.append(f"frame {number}: {fields.get('_ws.expert.message')}")
    return Dissection(frames, problems)
