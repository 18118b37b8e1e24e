"""A recorded connection as a pcapng capture that Wireshark dissects and decrypts, sans-I/O.

The TLS 1.2 byte stream a real connection would have carried (RFC 5246 §6.2: each handshake
message in handshake records, ChangeCipherSpec where §7.1 puts it, the Finished and
application-data records exactly as sent), over a synthesized TCP connection in IPv4, written
in pcapng (draft-ietf-opsawg-pcapng: Section Header, Interface Description, Enhanced Packet
and, with the operator's consent, a Decryption Secrets Block holding the NSS key log line).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kdf_lib import keylog
from kdf_lib.errors import DecodeError, TLSError
from kdf_lib.record import (
    HEADER_LENGTH,
    MAX_PLAINTEXT,
    PROTOCOL_VERSION,
    ContentType,
    split_records,
)
from kdf_lib.role import Role
from kdf_lib.wire import HandshakeType, Reader

from .recorded import RecordedHandshake

__all__ = [
    "CLIENT_ADDRESS",
    "LINKTYPE_RAW",
    "MSS",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "CaptureError",
    "TlsRecord",
    "application_records",
    "capture",
    "client_random",
    "export",
    "handshake_records",
    "holds_keylog",
    "packets",
    "with_keylog",
]

#: LINKTYPE_RAW: each packet begins with its IPv4 header (no link layer to make up).
LINKTYPE_RAW = 101
#: Ethernet's MSS over IPv4: a record longer than this spans segments, as on a real link
#: (Wireshark reassembles them).
MSS = 1460
#: The synthesized endpoints. Port 443 makes Wireshark dissect the stream as TLS unasked.
CLIENT_ADDRESS = bytes((127, 0, 0, 1))
SERVER_ADDRESS = bytes((127, 0, 0, 2))
SERVER_PORT = 443
#: The client's ephemeral port is derived from the connection id (RFC 6335's dynamic range),
#: so that two exported connections opened together stay two TCP streams.
_EPHEMERAL_BASE, _EPHEMERAL_COUNT = 49152, 16384
#: One synthesized packet every millisecond from the start time: the lab keeps no timings.
_TICK_US = 1000

# pcapng block types (draft-ietf-opsawg-pcapng §4, §10).
_SHB, _IDB, _EPB, _DSB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x0000000A
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
#: Decryption Secrets Block secrets type "TLSK": an NSS key log file.
_TLS_KEY_LOG = 0x544C534B
_OPT_END, _OPT_COMMENT, _SHB_USERAPPL, _IF_NAME = 0, 1, 4, 2

# TCP flags (RFC 9293 §3.1).
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10
_ISN = {Role.CLIENT: 0x1000_0000, Role.SERVER: 0x5000_0000}


class CaptureError(DecodeError, ValueError):
    """Records that are not complete TLS 1.2 records, or a capture this module did not write."""


@dataclass(frozen=True)
class TlsRecord:
    """One TLS record as its sender wrote it on the connection."""

    sender: Role
    data: bytes
    #: What it carries, for the packet comment ("ClientHello", "Finished (encrypted)", ...).
    note: str


# -- the TLS byte stream ------------------------------------------------------------------


def _handshake_records(sender: Role, name: str, message: bytes) -> list[TlsRecord]:
    """One handshake message in records of at most 2^14 bytes (RFC 5246 §6.2.1 lets a
    message span records; the lab's certificate chain can outgrow one)."""
    pieces = [message[i : i + MAX_PLAINTEXT] for i in range(0, len(message), MAX_PLAINTEXT)]
    return [
        TlsRecord(sender, _record(ContentType.handshake, piece), name)
        for piece in pieces or [message]
    ]


def _record(content_type: ContentType, fragment: bytes) -> bytes:
    return bytes([content_type]) + PROTOCOL_VERSION + struct.pack(">H", len(fragment)) + fragment


def _change_cipher_spec(sender: Role) -> TlsRecord:
    # RFC 5246 §7.1: one byte of value 1, in its own content type, just before Finished.
    return TlsRecord(sender, _record(ContentType.change_cipher_spec, b"\x01"), "ChangeCipherSpec")


def handshake_records(handshake: RecordedHandshake) -> list[TlsRecord]:
    """The handshake's records in the order they crossed the connection (RFC 5246 §7.3).

    Full: ClientHello; ServerHello, Certificate, [ServerKeyExchange], ServerHelloDone;
    ClientKeyExchange, ChangeCipherSpec, Finished; [NewSessionTicket], ChangeCipherSpec,
    Finished. Abbreviated: ClientHello; ServerHello, [NewSessionTicket], ChangeCipherSpec,
    Finished; ChangeCipherSpec, Finished. The plaintext messages are the encodings both
    services hash (lab_analysis.recorded); the Finished records are the recorded bytes.
    """
    client, server = Role.CLIENT, Role.SERVER
    out: list[TlsRecord] = []
    sender = client
    for message in handshake.handshake_messages():
        out += _handshake_records(sender, message.name, message.encoded)
        # The ClientHello hands the turn to the server, its ServerHelloDone back to the client
        # (RFC 5246 §7.3, Figure 1): whatever the messages in each flight are.
        if message.encoded[0] == HandshakeType.client_hello:
            sender = server
        elif message.encoded[0] == HandshakeType.server_hello_done:
            sender = client
    client_finished = [
        _change_cipher_spec(client),
        TlsRecord(client, handshake.client_finished_record, "Finished (encrypted)"),
    ]
    server_finished = [
        _change_cipher_spec(server),
        TlsRecord(server, handshake.server_finished_record, "Finished (encrypted)"),
    ]
    if handshake.resumed:
        return out + server_finished + client_finished
    ticket = handshake.new_session_ticket
    if ticket is not None:
        server_finished[:0] = _handshake_records(server, "NewSessionTicket", ticket.encode())
    return out + client_finished + server_finished


def application_records(items: Iterable[tuple[Role, bytes]]) -> list[TlsRecord]:
    """Records as /message carried them (``sent.record``, ``reply.record``), each split into
    its records; the framing is checked, the contents stay sealed.

    Raises:
        CaptureError: a value is not complete TLS 1.2 records back to back.
    """
    out: list[TlsRecord] = []
    for index, (sender, data) in enumerate(items):
        role, offset = Role(sender), 0
        try:
            for header, fragment in split_records(data):
                end = offset + HEADER_LENGTH + len(fragment)
                name = ContentType(header.content_type).name.replace("_", " ")
                out.append(TlsRecord(role, data[offset:end], f"{name} (encrypted)"))
                offset = end
        except TLSError:  # bad_record_mac or record_overflow: the framing is wrong
            raise CaptureError(f"records[{index}] is not complete TLS 1.2 records") from None
    return out


# -- TCP over IPv4 ------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's-complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class _Endpoint:
    address: bytes
    port: int
    seq: int


class _Tcp:
    """Both ends of one synthesized TCP connection: sequence numbers, acks, IPv4 ids."""

    def __init__(self, client_port: int) -> None:
        self.ends = {
            Role.CLIENT: _Endpoint(CLIENT_ADDRESS, client_port, _ISN[Role.CLIENT]),
            Role.SERVER: _Endpoint(SERVER_ADDRESS, SERVER_PORT, _ISN[Role.SERVER]),
        }
        self.ip_id = 0
        self.packets: list[tuple[bytes, str]] = []

    def send(self, sender: Role, flags: int, payload: bytes = b"", note: str = "") -> None:
        me = self.ends[sender]
        peer = self.ends[Role.SERVER if sender is Role.CLIENT else Role.CLIENT]
        ack = peer.seq if flags & _ACK else 0
        header = struct.pack(
            ">HHIIBBHHH", me.port, peer.port, me.seq, ack, 5 << 4, flags, 0xFFFF, 0, 0
        )
        pseudo = me.address + peer.address + struct.pack(">BBH", 0, 6, len(header) + len(payload))
        checksum = _checksum(pseudo + header + payload)
        tcp = header[:16] + struct.pack(">H", checksum) + header[18:] + payload
        self.ip_id += 1
        ip = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), self.ip_id, 0x4000, 64, 6, 0,
            me.address, peer.address,
        )  # fmt: skip
        ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
        self.packets.append((ip + tcp, note))
        # SYN and FIN take one sequence number each (RFC 9293 §3.4).
        me.seq = (me.seq + len(payload) + bool(flags & (_SYN | _FIN))) & 0xFFFF_FFFF

    def flight(self, sender: Role, records: Sequence[TlsRecord]) -> None:
        """The records one side sends in a row, cut into MSS-sized segments."""
        data = b"".join(r.data for r in records)
        notes = [r.note for i, r in enumerate(records) if i == 0 or records[i - 1].note != r.note]
        note = ", ".join(notes)
        for start in range(0, len(data), MSS):
            self.send(sender, _PSH | _ACK, data[start : start + MSS], note)


def _client_port(connection_id: str | None) -> int:
    if connection_id is None:
        return _EPHEMERAL_BASE
    return _EPHEMERAL_BASE + int(connection_id[:8], 16) % _EPHEMERAL_COUNT


# -- pcapng -------------------------------------------------------------------------------


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _options(*options: bytes) -> bytes:
    return b"".join(options) + struct.pack("<HH", _OPT_END, 0) if options else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _decryption_secrets_block(keylog_text: str) -> bytes:
    data = keylog_text.encode("ascii")
    return _block(_DSB, struct.pack("<II", _TLS_KEY_LOG, len(data)) + _pad4(data))


def capture(
    records: Sequence[TlsRecord],
    *,
    keylog_line: str | None = None,
    start: float = 0.0,
    connection_id: str | None = None,
    truncation: str | None = None,
) -> bytes:
    """The records as a pcapng capture of one TCP connection: handshake, records, FIN.

    Args:
        records: the TLS records in the order they were sent.
        keylog_line: an NSS ``CLIENT_RANDOM`` line, put in a Decryption Secrets Block before
            the first packet, so that Wireshark decrypts with no setup. It holds the master
            secret: pass it only when whoever gets the file may know it.
        start: the first packet's time (seconds since the epoch); packets follow 1 ms apart.
        connection_id: names the capture's interface and chooses the client's port.
        truncation: says that the connection carried records after ``records``, and which: a
            second comment on the last packet (the capture ends where its records do).
    """
    if keylog_line is not None and keylog.parse_line(keylog_line) is None:
        raise ValueError("keylog_line must be one NSS CLIENT_RANDOM line")
    tcp = _Tcp(_client_port(connection_id))
    client, server = Role.CLIENT, Role.SERVER
    tcp.send(client, _SYN, note="TCP handshake")
    tcp.send(server, _SYN | _ACK, note="TCP handshake")
    tcp.send(client, _ACK, note="TCP handshake")
    run: list[TlsRecord] = []
    for record in records:
        if run and run[-1].sender is not record.sender:
            tcp.flight(run[0].sender, run)
            run = []
        run.append(record)
    if run:
        tcp.flight(run[0].sender, run)
    tcp.send(client, _FIN | _ACK, note="TCP close")
    tcp.send(server, _FIN | _ACK, note="TCP close")
    tcp.send(client, _ACK, note="TCP close")

    out = [
        _block(
            _SHB,
            struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)
            + _options(_option(_SHB_USERAPPL, b"tls12-handshake-lab")),
        ),
        _block(
            _IDB,
            struct.pack("<HHI", LINKTYPE_RAW, 0, 0xFFFF)
            + _options(_option(_IF_NAME, f"lab connection {connection_id or ''}".encode())),
        ),
    ]
    if keylog_line is not None:
        out.append(_decryption_secrets_block(keylog_line.strip() + "\n"))
    microseconds = int(start * 1_000_000)
    for number, (packet, note) in enumerate(tcp.packets, 1):
        body = struct.pack(
            "<IIIII", 0, microseconds >> 32, microseconds & 0xFFFF_FFFF, len(packet), len(packet)
        ) + _pad4(packet)
        comments = [note] if note else []
        if truncation is not None and number == len(tcp.packets):
            comments.append(truncation)
        body += _options(*(_option(_OPT_COMMENT, c.encode()) for c in comments))
        out.append(_block(_EPB, body))
        microseconds += _TICK_US
    return b"".join(out)


def export(
    handshake: RecordedHandshake,
    messages: Iterable[tuple[Role, bytes]] = (),
    *,
    keylog_line: str | None = None,
    start: float = 0.0,
    truncation: str | None = None,
) -> bytes:
    """A recorded connection as pcapng: its handshake, then ``messages``' records in order
    (``truncation``: see :func:`capture`)."""
    records = handshake_records(handshake) + application_records(messages)
    return capture(
        records,
        keylog_line=keylog_line,
        start=start,
        connection_id=handshake.connection_id,
        truncation=truncation,
    )


# -- reading back what capture wrote ------------------------------------------------------


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(type, whole block) of each block of a little-endian pcapng section, checked."""
    reader = Reader(data)
    blocks = []
    try:
        while reader.remaining:
            block_type, length = struct.unpack("<II", reader.take(8))
            if length < 12 or length % 4:
                raise CaptureError("a pcapng block has an impossible length")
            body, trailer = reader.take(length - 12), reader.take(4)
            if struct.unpack("<I", trailer)[0] != length:
                raise CaptureError("a pcapng block's two lengths differ")
            blocks.append((block_type, struct.pack("<II", block_type, length) + body + trailer))
    except DecodeError as exc:
        raise CaptureError(f"not a whole pcapng file: {exc.message}") from None
    if (
        not blocks
        or blocks[0][0] != _SHB
        or struct.unpack_from("<I", blocks[0][1], 8)[0] != _BYTE_ORDER_MAGIC
    ):
        raise CaptureError("not a little-endian pcapng file (no Section Header Block first)")
    if sum(block_type == _SHB for block_type, _ in blocks) != 1:
        raise CaptureError("expected one pcapng section")
    return blocks


def packets(data: bytes) -> list[bytes]:
    """The packets (IPv4) of each Enhanced Packet Block, in order."""
    out = []
    for block_type, block in _blocks(data):
        if block_type == _EPB:
            if len(block) < 32:
                raise CaptureError("an Enhanced Packet Block is truncated")
            captured = struct.unpack_from("<I", block, 20)[0]
            if 28 + captured > len(block) - 4:
                raise CaptureError("an Enhanced Packet Block is truncated")
            out.append(block[28 : 28 + captured])
    return out


def holds_keylog(data: bytes) -> bool:
    """Whether a capture this module wrote has a Decryption Secrets Block with a key log."""
    return any(
        block_type == _DSB and struct.unpack_from("<I", block, 8)[0] == _TLS_KEY_LOG
        for block_type, block in _blocks(data)
        if len(block) >= 16
    )


def client_random(data: bytes) -> bytes:
    """The ClientHello's random in a capture this module wrote (its first TCP payload)."""
    for packet in packets(data):
        try:
            ip = Reader(packet)
            ip.take((ip.uint(1) & 0x0F) * 4 - 1)
            tcp = Reader(ip.take(ip.remaining))
            tcp.take(12)
            tcp.take((tcp.uint(1) >> 4) * 4 - 13)
            if not tcp.remaining:
                continue  # the TCP handshake
            if tcp.uint(1) != ContentType.handshake:
                break
            tcp.take(2 + 2)  # the record's version and length
            if tcp.uint(1) != HandshakeType.client_hello:
                break
            tcp.take(3 + 2)  # the message's length, client_version
            return tcp.take(32)
        except DecodeError:
            break
    raise CaptureError("the capture does not begin with a ClientHello")


def with_keylog(data: bytes, keylog_line: str) -> bytes:
    """A capture this module wrote, with a Decryption Secrets Block holding ``keylog_line``
    inserted before its first packet (after the Interface Description Block)."""
    if keylog.parse_line(keylog_line) is None:
        raise ValueError("keylog_line must be one NSS CLIENT_RANDOM line")
    blocks = _blocks(data)
    at = next((i for i, (t, _) in enumerate(blocks) if t == _EPB), len(blocks))
    secrets = _decryption_secrets_block(keylog_line.strip() + "\n")
    return b"".join(b for _, b in blocks[:at]) + secrets + b"".join(b for _, b in blocks[at:])
