"""Offline decryption with a key log, as Wireshark does with SSLKEYLOGFILE.

From the JSON that crossed the wire (client_svc's ``exchanges``) and the NSS key log line
for its client_random: derive the key block (RFC 5246 §6.3), open both Finished records at
sequence number 0 and check their verify_data against the rebuilt transcript (§7.4.9),
then open the application-data records in order, each direction from sequence number 1.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any

from kdf_lib import keylog
from kdf_lib.errors import TLSError
from kdf_lib.messages import Finished
from kdf_lib.prf import MASTER_SECRET_LENGTH
from kdf_lib.record import PROTOCOL_VERSION, ContentType, RecordProtection, split_records
from kdf_lib.role import Role
from kdf_lib.trace import fingerprint
from lab_analysis.recorded import ExchangeError, RecordedHandshake, parse_exchanges
from lab_common.contract import MESSAGE

from .style import Style, wrap

__all__ = [
    "DecryptError",
    "DecryptReport",
    "OpenedRecord",
    "WireRecord",
    "decrypt",
    "load_records",
    "render_report",
]

_ARROWS = {Role.CLIENT: "client → server", Role.SERVER: "server → client"}
_DIRECTIONS = {
    "client": Role.CLIENT,
    "server": Role.SERVER,
    "client_to_server": Role.CLIENT,
    "server_to_client": Role.SERVER,
}


class DecryptError(Exception):
    """Decryption cannot start: unusable inputs, or no key log line for this session."""


@dataclass(frozen=True)
class WireRecord:
    """Record bytes as captured: ``sender`` None when the capture does not say."""

    data: bytes
    sender: Role | None = None
    declared_seq: int | None = None
    source: str = ""


@dataclass
class OpenedRecord:
    sender: Role | None
    seq: int | None
    length: int
    content_type: int | None = None
    plaintext: bytes | None = None
    ok: bool = False
    #: Finished records: the verify_data received, and the PRF call it was checked against.
    verify_data: str = ""
    verify_formula: str = ""
    problem: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": _ARROWS[self.sender] if self.sender else "unknown",
            "seq": self.seq,
            "length": self.length,
            "content_type": self.content_type,
            "content_type_name": _content_type_name(self.content_type),
            "plaintext": _plaintext_text(self.plaintext),
            "plaintext_hex": self.plaintext.hex() if self.plaintext is not None else None,
            "ok": self.ok,
            "verify_data": self.verify_data or None,
            "verify_formula": self.verify_formula or None,
            "problem": self.problem or None,
            "notes": self.notes,
        }


@dataclass
class DecryptReport:
    handshake: RecordedHandshake
    keylog_line: int
    fingerprint_matches: bool | None
    records: list[OpenedRecord]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.records) and self.fingerprint_matches is not False

    def to_json(self) -> dict[str, Any]:
        hs = self.handshake
        return {
            "connection_id": hs.connection_id,
            "client_random": hs.client_random.hex(),
            "server_random": hs.server_random.hex(),
            "cipher_suite": hs.suite.name,
            "resumed": hs.resumed,
            "extended_master_secret": hs.extended_master_secret,
            "encrypt_then_mac": hs.encrypt_then_mac,
            "keylog_line": self.keylog_line,
            "master_secret_matches_fingerprint": self.fingerprint_matches,
            "records": [r.to_json() for r in self.records],
            "ok": self.ok,
        }


# -- inputs -----------------------------------------------------------------------------


def load_records(obj: Any) -> list[WireRecord]:
    """Application-data records from a RECORDS.json document.

    Accepted: a list (or one) of client_svc ``/message`` answers (``sent.record`` then
    ``reply.record``), ``{"direction": "client"|"server"|"client_to_server"|"server_to_client",
    "record": base64}`` objects, or bare base64 strings (the direction is then found by
    which keys open the record). A base64 value may hold several records back to back.
    """
    items = obj if isinstance(obj, list) else [obj]
    out: list[WireRecord] = []
    for index, item in enumerate(items):
        where = f"records[{index}]"
        if isinstance(item, str):
            out.append(WireRecord(_b64(item, where), None, None, where))
        elif isinstance(item, dict) and ("sent" in item or "reply" in item):
            for part, writer in (("sent", Role.CLIENT), ("reply", Role.SERVER)):
                body = item.get(part)
                if not isinstance(body, dict) or "record" not in body:
                    raise DecryptError(f"{where}: the {MESSAGE} answer has no {part}.record")
                seq = body.get("seq")
                out.append(
                    WireRecord(
                        _b64(body["record"], f"{where} {part}.record"),
                        writer,
                        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                        f"{where}.{part}",
                    )
                )
        elif isinstance(item, dict) and "record" in item:
            direction = item.get("direction")
            named = _DIRECTIONS.get(direction) if isinstance(direction, str) else None
            if direction is not None and named is None:
                raise DecryptError(f"{where}: unknown direction {direction!r}")
            seq = item.get("seq")
            out.append(
                WireRecord(
                    _b64(item["record"], where),
                    named,
                    seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                    where,
                )
            )
        else:
            raise DecryptError(
                f"{where}: expected a {MESSAGE} answer, a {{direction, record}} object "
                "or a base64 string"
            )
    return out


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise DecryptError(f"{where}: a record must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError(f"{where}: not valid base64") from None


def _single_records(data: bytes) -> Iterator[bytes | None]:
    """Cut back-to-back records apart; None for framing that cannot be followed."""
    try:
        for header, fragment in split_records(data):
            yield (
                bytes((header.content_type,))
                + PROTOCOL_VERSION
                + len(fragment).to_bytes(2, "big")
                + fragment
            )
    except TLSError:
        yield None


# -- decryption -------------------------------------------------------------------------


def decrypt(
    keylog_text: str, session: Any, records: list[WireRecord] | None = None
) -> DecryptReport:
    """Find the master secret in the key log, then open and check every record.

    Raises:
        DecryptError: the session JSON is unusable or the key log has no line for it.
    """
    try:
        hs = parse_exchanges(session)
    except ExchangeError as exc:
        raise DecryptError(f"the session JSON: {exc}") from None
    master = keylog.find_master_secret(keylog_text, hs.client_random)
    if master is None:
        raise DecryptError(
            f"the key log has no CLIENT_RANDOM line for client_random {hs.client_random.hex()}: "
            "it was not written by the client of this session (was SSLKEYLOGFILE set on "
            "client_svc when the handshake ran?)"
        )
    line_number = _line_number(keylog_text, hs.client_random)
    # A session file from client_svc also names the master secret's fingerprint: a cheap,
    # early sign that the key log line is the wrong one (Wireshark has no such hint).
    fingerprints = session.get("fingerprints") if isinstance(session, dict) else None
    expected = fingerprints.get("master_secret") if isinstance(fingerprints, dict) else None
    fp_matches = fingerprint(master) == expected if isinstance(expected, str) else None

    readers = hs.record_readers(master)
    opened = _open_finished_pair(hs, master, readers)
    for record in records or []:
        opened.extend(_open_application(record, readers))
    return DecryptReport(hs, line_number, fp_matches, opened)


def _line_number(text: str, client_random: bytes) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        entry = keylog.parse_line(line)
        if entry is not None and entry.client_random == client_random:
            return number
    return 0


def _open_finished_pair(
    hs: RecordedHandshake, master: bytes, readers: dict[Role, RecordProtection]
) -> list[OpenedRecord]:
    """Both Finished records at seq 0, in the order they were sent, with verify_data checked."""
    first = hs.first_finished_sender
    second = first.peer
    records = {Role.CLIENT: hs.client_finished_record, Role.SERVER: hs.server_finished_record}
    out = []
    first_message: Finished | None = None
    for sender in (first, second):
        result = _open_one(readers[sender], sender, records[sender])
        out.append(result)
        if not result.ok:
            result.problem = (
                f"the {sender} Finished record (seq 0) does not authenticate with keys derived "
                "from the key log's master secret: the key log line does not belong to this "
                "session, or the record was altered"
            )
            continue
        try:
            if result.content_type != ContentType.handshake:
                raise ValueError("it is not a handshake record")
            message = Finished.decode(result.plaintext or b"")
        except (TLSError, ValueError):
            result.ok = False
            result.problem = f"the {sender} Finished record does not hold a Finished message"
            continue
        result.verify_data = message.verify_data.hex()
        if sender == second and first_message is None:
            result.ok = False
            result.problem = "verify_data not checked: the first Finished could not be read"
            continue
        expected = hs.expected_verify_data(master, sender, first_message)
        covered = [m.name for m in hs.finished_messages(sender, first_message)]
        span = f"{covered[0]} … {covered[-1]}" if len(covered) > 2 else " + ".join(covered)
        hash_name = hs.suite.prf_hash.upper().replace("SHA", "SHA-")
        formula = f'PRF(master_secret, "{sender} finished", {hash_name}({span}))'
        result.verify_formula = formula
        if not compare_digest(message.verify_data, expected):
            result.ok = False
            result.problem = (
                f"the {sender} Finished verify_data {message.verify_data.hex()} is not "
                f"{formula} over the transcript rebuilt from the exchanged JSON"
            )
        if sender == first:
            first_message = message
    return out


def _open_one(reader: RecordProtection, sender: Role, record: bytes) -> OpenedRecord:
    """Open one record at the reader's sequence number; the number is spent either way."""
    seq = reader.seq
    result = OpenedRecord(sender, seq, len(record))
    try:
        content_type, plaintext = reader.open(record)
    except TLSError:
        # The sender spent this sequence number even if the record was damaged on the way.
        reader.seq = seq + 1
        result.content_type = record[0] if record else None
        return result
    result.content_type, result.plaintext, result.ok = int(content_type), plaintext, True
    return result


def _open_application(
    wire: WireRecord, readers: dict[Role, RecordProtection]
) -> Iterator[OpenedRecord]:
    for index, record in enumerate(_single_records(wire.data)):
        if record is None:
            yield OpenedRecord(
                wire.sender,
                None,
                len(wire.data),
                problem=f"{wire.source}: the record framing is broken (truncated or not TLS 1.2)",
            )
            return
        sender = wire.sender
        if sender is None:
            sender = _guess_sender(readers, record)
            if sender is None:
                seqs = ", ".join(f"{s} seq {readers[s].seq}" for s in Role)
                yield OpenedRecord(
                    None,
                    None,
                    len(record),
                    record[0],
                    problem=f"{wire.source}: the record does not authenticate in either direction ({seqs})",
                )
                continue
        reader = readers[sender]
        declared = wire.declared_seq + index if wire.declared_seq is not None else None
        result = _open_one(reader, sender, record)
        if declared is not None and declared != result.seq:
            result.notes.append(
                f"{wire.source} says seq {declared}; records are numbered in the order they "
                f"appear, so this is seq {result.seq} (is a record missing from the file?)"
            )
        if not result.ok:
            result.problem = (
                f"{wire.source}: the record does not authenticate (bad_record_mac) at seq "
                f"{result.seq}: it was altered, or belongs to another connection or position"
            )
        elif result.content_type != ContentType.application_data:
            result.notes.append("not application data")
        yield result


def _guess_sender(readers: dict[Role, RecordProtection], record: bytes) -> Role | None:
    for sender in Role:
        reader = readers[sender]
        seq = reader.seq
        try:
            reader.open(record)
        except TLSError:
            continue
        finally:
            reader.seq = seq
        return sender
    return None


# -- the report -------------------------------------------------------------------------


def _content_type_name(value: int | None) -> str:
    if value is None:
        return "?"
    try:
        return f"{ContentType(value).name} ({value})"
    except ValueError:
        return f"unknown ({value})"


def _plaintext_text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Text with line breaks and tabs is still text; JSON quoting shows them as \n, \t.
    return text if all(c.isprintable() or c in "\t\n\r" for c in text) else None


def _record_lines(record: OpenedRecord, style: Style) -> list[str]:
    """One record of the report: its direction and sequence number, then what it held."""
    width = style.width
    direction = _ARROWS[record.sender] if record.sender else "direction unknown"
    direction = direction.replace("→", style.glyphs.to)
    seq = f"seq {record.seq}" if record.seq is not None else "seq ?"
    head = f"{direction}  {seq}  {_content_type_name(record.content_type)}  {record.length} bytes"
    out = [f"  {style.mark(record.ok)} " + style.paint(head, "bold")]
    indent = " " * 6
    if record.verify_data:
        lines = wrap(f"Finished, verify_data {record.verify_data}", width, indent)
        if record.ok:
            lines += wrap(f"= {record.verify_formula}", width, indent, indent + "  ")
        out.extend(style.paint(line, "green" if record.ok else "red") for line in lines)
    elif record.ok and record.plaintext is not None:
        text = _plaintext_text(record.plaintext)
        shown = json.dumps(text, ensure_ascii=False) if text is not None else None
        out.extend(wrap(shown or f"hex {record.plaintext.hex()}", width, indent))
    for note in record.notes:
        out.extend(style.paint(line, "yellow") for line in wrap(f"note: {note}", width, indent))
    if record.problem:
        out.extend(style.paint(line, "red") for line in wrap(record.problem, width, indent))
    return out


def render_report(report: DecryptReport, keylog_name: str, style: Style) -> list[str]:
    hs = report.handshake
    width = style.width
    arrow = style.glyphs.to
    out = [
        style.paint("tls-lab decrypt: the connection as Wireshark sees it with a key log", "bold")
    ]

    def fact(label: str, text: str, mark: bool | None = None) -> None:
        head = f"  {label:<18}"
        prefix = style.mark(mark) + " " if mark is not None else ""
        lines = wrap(text, width - len(head) - 2)
        out.append(head + prefix + lines[0])
        out.extend(" " * len(head) + line for line in lines[1:])

    if hs.connection_id:
        fact("connection", hs.connection_id)
    client_random = hs.client_random.hex()
    fact("client_random", client_random if width >= 20 + 64 else style.short(client_random))
    fact(
        "key log",
        f"{keylog_name}, line {report.keylog_line}: CLIENT_RANDOM {style.short(hs.client_random.hex())} "
        f"{arrow} master secret ({MASTER_SECRET_LENGTH} bytes)",
    )
    if report.fingerprint_matches is not None:
        fact(
            "master secret",
            "its sha256 equals the session's fingerprint"
            if report.fingerprint_matches
            else "its sha256 differs from the session's fingerprint: wrong key log line",
            report.fingerprint_matches,
        )
    suite = hs.suite
    fact("cipher suite", f"{suite.name} ({suite.bulk_cipher.value}, PRF {suite.prf_hash})")
    if suite.is_aead:
        protection = "AEAD: the cipher authenticates, no MAC key"
    elif hs.encrypt_then_mac:
        protection = "CBC + HMAC, encrypt-then-MAC (RFC 7366, in both hellos)"
    else:
        protection = "CBC + HMAC, MAC-then-encrypt (encrypt_then_mac not negotiated)"
    fact("records", protection)
    fact(
        "key block",
        f'PRF(master_secret, "key expansion", server_random + client_random) {arrow} '
        f"{suite.key_block_length} bytes, split in RFC 5246 §6.3 order",
    )
    fact(
        "transcript",
        ", ".join(m.name for m in hs.handshake_messages()) + " (rebuilt from the exchanged JSON)",
    )
    if hs.resumed:
        fact("handshake", "abbreviated (resumed): the server's Finished comes first")
    out.append("")
    for record in report.records:
        out.extend(_record_lines(record, style))
    failed = sum(1 for r in report.records if not r.ok)
    out.append("")
    if report.ok:
        summary = (
            f"{len(report.records)} records opened, both Finished messages verify: the key log "
            "line is this session's, and the records are intact"
        )
    else:
        summary = f"{failed} of {len(report.records)} records did not open or did not verify"
    lines = wrap(summary, width - 4)
    out.append(f"  {style.mark(report.ok)} " + style.paint(lines[0], "bold"))
    out.extend("    " + style.paint(line, "bold") for line in lines[1:])
    return out
