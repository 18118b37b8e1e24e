"""No single request costs a service's worker much CPU, whatever its body (issue 10, item 9).

At the default limits (MAX_BODY_BYTES 4 MiB), the most expensive bodies we could think of go to
every endpoint of both services under a real gunicorn, and the worker's CPU time (all threads,
read from the kernel before and after each request) is checked against a bound. The aim is
about 100 ms; the bound asserted is CPU_BOUND_S, with room for a loaded machine. This measures
CPU time, not wall time: a slow or busy machine does not make it fail.

What keeps the costs down: records per request are capped before any is opened
(lab_common.contract.MAX_RECORDS_PER_REQUEST), JSON is checked for depth and size outside its
strings at C speed before it is parsed (kdf_lib.messages), and a chunked body whose framing
costs too much to read is refused (lab_common.http.MAX_BODY_READ_CPU).
Run with ``-s`` to see the table of measured costs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers.peer import Peer
from helpers.rawhttp import exchange, raw_request
from helpers.served import Service, cpu_seconds, start_lab, stop_lab

from client_svc.demos import ATTACKS, MISTAKES
from client_svc.demos import MAX_SESSIONS as MAX_DEMO_SESSIONS
from client_svc.resumption_demo import MAX_CLIENTS, MAX_REPLICAS, MAX_ROUNDS
from kdf_lib.errors import DecodeError
from kdf_lib.messages import MAX_JSON_STRUCTURE, parse_json
from kdf_lib.record import MAX_PLAINTEXT, ContentType, count_records
from lab_common.contract import (
    DEMO_FORWARD_SECRECY,
    DEMO_MISMATCH,
    DEMO_MITM,
    DEMO_MTLS,
    DEMO_RESUMPTION,
    DEMO_TAMPER,
    HANDSHAKE,
    HEALTH,
    MAX_RECORDS_PER_REQUEST,
    MESSAGE,
    MIN_REPLY_FRAGMENT,
    OPENAPI,
    PRF_CALCULATOR,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    path,
)
from lab_common.settings import MAX_BODY_LIMIT
from server_svc.config import ServerSettings

from .documented import Operation, operations, string_slots

#: The issue's "about 100 ms", with a generous margin for CPU time on a shared machine.
CPU_BOUND_S = 0.25
LIMIT = ServerSettings().max_body_bytes
#: The costliest suite per record: CBC with HMAC-SHA384, MAC-then-encrypt.
CBC_SUITE = "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"
#: The most records per byte: an empty AES-GCM record is 29 bytes.
GCM_SUITE = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
JSON = "application/json"
#: The time a worker is given to finish with a request (its access log line) before its CPU
#: time is read again.
SETTLE_S = 0.05


@dataclass
class Lab:
    server: Service
    client: Service
    documents: dict[str, Any]

    def service(self, name: str) -> Service:
        return self.server if name == "server" else self.client


@pytest.fixture(scope="module")
def lab(tmp_path_factory, pair_certificates) -> Iterator[Lab]:
    """Both services under gunicorn with every limit at its default."""
    live = start_lab(tmp_path_factory.mktemp("request-cost"), certificates=pair_certificates)
    try:
        documents = {
            name: served.http().get(OPENAPI).get_json()
            for name, served in (("server", live.server), ("client", live.client))
        }
        yield Lab(live.server, live.client, documents)
    finally:
        stop_lab(live)


@dataclass(frozen=True)
class Cost:
    service: str
    request: str
    case: str
    status: int
    server_s: float
    client_s: float

    @property
    def worst_s(self) -> float:
        return max(self.server_s, self.client_s)


class Meter:
    """Sends requests and keeps what each cost both workers."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.costs: list[Cost] = []
        self._pids = {name: lab.service(name).worker_pid() for name in ("server", "client")}

    def send(self, service: str, request: bytes, case: str) -> Cost:
        before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        answer = exchange(self.lab.service(service).address, request)
        time.sleep(SETTLE_S)
        used = {name: cpu_seconds(pid) - before[name] for name, pid in self._pids.items()}
        line = request[: request.index(b"\r\n")].decode()
        cost = Cost(
            service,
            line.rsplit(" ", 1)[0],
            case,
            answer.status_code,
            used["server"],
            used["client"],
        )
        self.costs.append(cost)
        return cost

    def check(self, title: str) -> None:
        print(f"\n{title}\n" + table(self.costs))
        over = [c for c in self.costs if c.worst_s > CPU_BOUND_S or c.status >= 500]
        assert not over, f"over {CPU_BOUND_S * 1000:.0f} ms of CPU, or a 5xx:\n" + table(over)


def table(costs: list[Cost]) -> str:
    rows = [
        f"| {c.service} | `{c.request}` | {c.case} | {c.status} | "
        f"{c.server_s * 1000:.1f} | {c.client_s * 1000:.1f} |"
        for c in sorted(costs, key=lambda c: -c.worst_s)
    ]
    head = "| service | request | body | status | server_svc CPU ms | client_svc CPU ms |"
    return "\n".join([head, "|---|---|---|---|---|---|", *rows])


# -- in-process: the limits themselves -----------------------------------------------------


def test_count_records_reads_headers_and_stops_past_the_limit():
    empty = b"\x17\x03\x03\x00\x00"
    assert count_records(b"", 3) == 0
    assert count_records(empty * 10, 100) == 10
    assert count_records(empty * 10, 3) == 4  # enough to tell "over 3", no further
    assert count_records(empty * 2 + b"\x17\x03", 100) == 3  # a cut header counts as one
    assert count_records(b"\x17\x03\x03\x00\x05" + b"x" * 5 + empty, 100) == 2


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ("[" * 9 + "]" * 9, "nested"),
        ('{"x": ' + "[" * 7 + "]" * 7 + "}", None),  # 8 levels: the most allowed
        ('{"x": ' + '{"a": ' * 8 + "1" + "}" * 9, "nested"),  # objects nest as arrays do
        ('{"x": "' + "[" * 100 + '"}', None),  # brackets in a string are text
        (r'{"x": "\\\"' + "[" * 100 + '"}', None),  # after an escaped backslash and quote
        (r'{"x": "\\", "y": ' + "[" * 9 + "]" * 9 + "}", "nested"),  # \\ ends in a quote
        ('{"x": [' + "0," * 2045 + "0]}", None),  # 4096 characters outside strings
        ('{"x": [' + "0," * 2046 + "0]}", "outside its strings"),
        ('{"x": [' + '"",' * 4096 + '""]}', "JSON strings"),
        ('{"x": ' + " " * 1_000_000 + "1}", None),  # whitespace is not counted
        ('{"x": ' + "9" * 5000 + "}", "outside its strings"),
        ('{"x": "a"' + '"', "not valid JSON"),  # a string left open
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else str(v),
)
def test_the_codec_bounds_depth_and_structure_before_parsing(body, refusal):
    if refusal is None:
        assert isinstance(parse_json(body.encode()), dict)
    else:
        with pytest.raises(DecodeError, match=refusal):
            parse_json(body.encode())


def _post_records(app: Any, peer: Peer, records: bytes) -> Any:
    return app.test_client().post(
        path(RECORDS, peer.connection_id), data=records, content_type=RECORDS_MEDIA_TYPE
    )


def test_records_past_the_cap_are_refused_before_any_is_opened(server_app):
    peer = Peer(server_app.test_client(), GCM_SUITE).complete()
    assert peer.connection is not None
    twin = peer.fresh_writer()
    twin.seq = peer.connection.writer.seq
    answer = _post_records(server_app, peer, _records(twin, [0] * (MAX_RECORDS_PER_REQUEST + 1)))
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "too_many_records"
    view = peer.server_view()
    assert view["sequence_numbers"]["read"] == peer.connection.writer.seq
    assert view["closed"] is False and view["messages"] == 0
    # The same connection goes on: the next record is the one the server expects.
    answer = _post_records(server_app, peer, _records(peer.connection.writer, [0] * 3))
    assert answer.status_code == 200
    assert answer.headers["TLS-Received-Records"] == "3"


@pytest.mark.parametrize(
    ("body_limit", "fragment"),
    [(MAX_BODY_LIMIT, MAX_PLAINTEXT), (LIMIT, MIN_REPLY_FRAGMENT)],
    ids=["the largest body limit in full records", "the default limit in 512-byte records"],
)
def test_a_whole_body_of_records_fits_under_the_cap(make_server, body_limit, fragment):
    """The cap leaves room for legitimate use: a message filling MAX_BODY_BYTES at its ceiling
    in 16 KiB records, or at its default in the smallest (RFC 6066) fragments."""
    app = make_server(MAX_CONTENT_LENGTH=body_limit)
    peer = Peer(app.test_client(), CBC_SUITE).complete()
    assert peer.connection is not None
    size = len(_records(peer.fresh_writer(), [fragment]))
    count = body_limit // size
    records = _records(peer.connection.writer, [fragment] * count)
    assert body_limit - size < len(records) <= body_limit
    answer = _post_records(app, peer, records)
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["TLS-Received-Records"] == str(count)


# -- bodies ------------------------------------------------------------------------------


def _fill(unit: bytes, head: bytes = b"", tail: bytes = b"") -> bytes:
    """``head``, ``unit`` as often as fits, ``tail``: a body of (nearly) LIMIT bytes."""
    return head + unit * ((LIMIT - len(head) - len(tail)) // len(unit)) + tail


def _string_of(unit: bytes) -> bytes:
    return _fill(unit, b'{"x":"', b'"}')


def _widest_accepted_structure() -> bytes:
    """The most structure the codec takes: MAX_JSON_STRUCTURE characters outside strings."""
    count = (MAX_JSON_STRUCTURE - len("{:[0]}")) // 2
    return b'{"x":[' + b"0," * count + b"0]}"


#: Bodies that cost a naive JSON parser, or the checks before it, the most.
HOSTILE_JSON: dict[str, bytes] = {
    "4 MiB of [": _fill(b"["),
    "[][][]...": _fill(b"[]"),
    "[[],[],...]": _fill(b"[],", b"[", b"[]]"),
    "[{},{},...]": _fill(b"{},", b"[", b"{}]"),
    "8 levels deep, over and over": _fill(b"[[[[[[[]]]]]]],", b'{"x":[', b"[]]}"),
    "one key over and over": _fill(b'"a":0,', b"{", b'"b":0}'),
    "distinct keys": b"{"
    + b",".join(b'"%d":0' % i for i in range(LIMIT // 12))[: LIMIT - 20].rsplit(b",", 1)[0]
    + b"}",
    "[1,1,...]": _fill(b"1,", b'{"x":[', b"1]}"),
    "strings over and over": _fill(b'"",', b"[", b'""]'),
    "an integer of 4 Mi digits": _fill(b"7", b'{"x":', b"}"),
    "a fraction of 4 Mi digits": _fill(b"7", b'{"x":0.', b"}"),
    "4 MiB of whitespace": _fill(b" ", b"{", b"}"),
    "whitespace and digits": _fill(b" 1", b'{"x":[', b"]}"),
    "the widest structure accepted": _widest_accepted_structure(),
    "a string of [": _string_of(b"["),
    "a string of \\u0041 escapes": _string_of(b"\\u0041"),
    'a string of \\" escapes': _string_of(b'\\"'),
    "a string of \\\\ escapes": _string_of(b"\\\\"),
    "a string of surrogate pairs": _string_of(b"\\ud83d\\ude00"),
    "surrogate pairs, then a lone one": _fill(b"\\ud83d\\ude00", b'{"x":"', b'\\ud800"}'),
    "a string of € (3 bytes each)": _string_of("€".encode()),
    "4 MiB that is not UTF-8": _fill(b"\xff"),
}


def _string_field_bodies(operation: Operation) -> dict[str, bytes]:
    """Each string field of the documented request, 4 MiB long (hex and base64 digits)."""
    assert operation.body_schema is not None
    filler = "0" * (LIMIT - 200)
    return {
        f"4 MiB in {where}": json.dumps(value).encode()
        for where, value in string_slots(operation.body_schema, filler)
    }


def _json_operations(lab: Lab) -> list[tuple[str, Operation]]:
    found = [
        (name, op)
        for name, document in lab.documents.items()
        for op in operations(document)
        if op.body_schema is not None
    ]
    assert len(found) >= 8, found
    return found


# -- the tests -----------------------------------------------------------------------------


def test_no_json_body_costs_a_worker_more_than_the_bound(lab):
    meter = Meter(lab)
    for service, operation in _json_operations(lab):
        target = operation.url("0" * 32)
        bodies = {**HOSTILE_JSON, **_string_field_bodies(operation)}
        for case, body in bodies.items():
            assert len(body) <= LIMIT, case
            meter.send(service, raw_request("POST", target, body, JSON), case)
    meter.check("JSON bodies on every JSON endpoint")


def _records(writer: Any, sizes: list[int]) -> bytes:
    return b"".join(writer.seal(ContentType.application_data, b"x" * size) for size in sizes)


class RecordSender:
    """Sends records of one established connection to /records or /message and checks how
    far the server's read sequence number moved."""

    def __init__(self, meter: Meter, peer: Peer) -> None:
        self.meter = meter
        self.peer = peer

    def _read_seq(self) -> int:
        return int(self.peer.server_view()["sequence_numbers"]["read"])

    def _send(
        self, target: str, body: bytes, media_type: str, case: str, status: int, moved: int
    ) -> None:
        assert len(body) <= LIMIT, case
        seq = self._read_seq()
        cost = self.meter.send("server", raw_request("POST", target, body, media_type), case)
        assert cost.status == status, case
        assert self._read_seq() == seq + moved, case

    def records(self, case: str, records: bytes, status: int, moved: int) -> None:
        self._send(
            path(RECORDS, self.peer.connection_id), records, RECORDS_MEDIA_TYPE, case, status, moved
        )

    def message(self, case: str, records: bytes, status: int, moved: int, **extra: Any) -> None:
        body = {"connection_id": self.peer.connection_id, "record": base64.b64encode(records)}
        body["record"] = body["record"].decode()
        text = json.dumps({**body, **extra}).encode()
        self._send(MESSAGE, text, JSON, case, status, moved)


def test_no_records_body_costs_the_server_more_than_the_bound(lab):
    """/records and /message: many empty records (over the cap, and exactly at it), many tiny
    records, 4 MiB of full records, the smallest reply fragments, and garbage."""
    meter = Meter(lab)
    cap = MAX_RECORDS_PER_REQUEST
    for suite in (GCM_SUITE, CBC_SUITE):
        peer = Peer(lab.server.http(), suite, etm=False).complete()
        assert peer.connection is not None
        writer = peer.connection.writer
        send = RecordSender(meter, peer)
        empty = len(writer.seal(ContentType.application_data, b""))
        writer.seq -= 1
        # Over the cap: refused from the headers, nothing opened. A copy of the writer seals
        # them, so the peer's own sequence number stays where the server's is.
        twin = peer.fresh_writer()
        twin.seq = writer.seq
        many = LIMIT // empty
        send.records(
            f"{suite}: 4 MiB of empty records ({many})", _records(twin, [0] * many), 413, 0
        )
        twin.seq = writer.seq
        many = (LIMIT * 3 // 4 - 200) // empty
        send.message(
            f"{suite}: 3 MiB of empty records ({many}) in base64",
            _records(twin, [0] * many),
            413,
            0,
        )
        # At the cap: accepted, every record opened.
        send.records(f"{suite}: {cap} empty records", _records(writer, [0] * cap), 200, cap)
        send.records(f"{suite}: {cap} 1-byte records", _records(writer, [1] * cap), 200, cap)
        send.message(f"{suite}: {cap} empty records", _records(writer, [0] * cap), 200, cap)
        # Full records: the most bytes to decrypt and to seal again.
        full = (LIMIT - 1024) // (MAX_PLAINTEXT + 100)
        send.records(
            f"{suite}: 4 MiB of full records ({full})",
            _records(writer, [MAX_PLAINTEXT] * full),
            200,
            full,
        )
        full = (LIMIT * 3 // 4 - 1024) // (MAX_PLAINTEXT + 100)
        send.message(
            f"{suite}: 3 MiB of full records ({full}), reply in {MIN_REPLY_FRAGMENT}-byte records",
            _records(writer, [MAX_PLAINTEXT] * full),
            200,
            full,
            reply_fragment_size=MIN_REPLY_FRAGMENT,
        )
        # Garbage: headers alone are over the cap; noise fails the first record (and with it
        # the connection, so it comes last).
        headers = b"\x17\x03\x03\x00\x00" * (LIMIT // 5)
        send.records(f"{suite}: 4 MiB of empty record headers", headers, 413, 0)
        noise = bytes(range(256)) * (LIMIT // 256)
        send.records(f"{suite}: 4 MiB of noise", noise, 400, 0)
    meter.check("Record bodies on /records and /message")


def test_chunked_bodies_in_tiny_pieces_cost_no_more_than_the_bound(lab):
    """gunicorn parses chunked framing in Python, about 2 µs a chunk: 4 MiB in 1-byte chunks
    would cost the worker 8 s. Reading stops at MAX_BODY_READ_CPU (413 body_too_fragmented);
    whether 256-byte chunks get there depends on the machine, so only the cost is checked."""
    meter = Meter(lab)
    targets = [("server", "POST", MESSAGE), ("server", "GET", HEALTH)]
    targets += [("client", "POST", HANDSHAKE)]
    for service, method, target in targets:
        for chunk in (1, 16, 256):
            body = b" " * (LIMIT // 4 if chunk == 1 else LIMIT)
            case = f"{len(body) // 1024} KiB of spaces in {chunk}-byte chunks"
            cost = meter.send(service, raw_request(method, target, body, JSON, chunk=chunk), case)
            if chunk < 256:
                assert cost.status == 413, cost
    meter.check("Chunked bodies in small chunks")


def test_the_heaviest_legitimate_requests_cost_no_more_than_the_bound(lab):
    """The largest message client_svc takes, handshakes, the PRF page, the demos, and every
    GET with a 4 MiB body it ignores."""
    meter = Meter(lab)
    client = lab.client
    for kind in ("rsa", "ecdhe", "dhe"):
        body = json.dumps({"key_exchange": kind}).encode()
        assert meter.send("client", raw_request("POST", HANDSHAKE, body, JSON), kind).status == 200
    plaintexts = {
        "2 Mi characters of plaintext": json.dumps({"plaintext": "a" * (2 * 1024 * 1024)}),
        '2 Mi \\" escapes of plaintext': '{"plaintext": "' + '\\"' * ((LIMIT - 20) // 2) + '"}',
        "699 Ki \\u20ac escapes of plaintext": '{"plaintext": "'
        + "\\u20ac" * ((LIMIT - 20) // 6)
        + '"}',
    }
    for case, text in plaintexts.items():
        cost = meter.send("client", raw_request("POST", MESSAGE, text.encode(), JSON), case)
        assert cost.status == 200, case
    prf = {"secret": "ab" * 1024, "label": "x" * 255, "seed": "cd" * 1024, "length": 1024}
    for hash_name in ("sha256", "sha384"):
        body = json.dumps({**prf, "hash_name": hash_name}).encode()
        assert (
            meter.send("client", raw_request("POST", PRF_CALCULATOR, body, JSON), hash_name).status
            == 200
        )
    demos = [
        (DEMO_FORWARD_SECRECY, {"sessions": MAX_DEMO_SESSIONS}),
        *((DEMO_TAMPER, {"attack": attack}) for attack in ATTACKS),
        *((DEMO_MISMATCH, {"mistake": mistake}) for mistake in MISTAKES),
        (DEMO_MITM, {}),
        (DEMO_RESUMPTION, {"replicas": MAX_REPLICAS, "clients": MAX_CLIENTS, "rounds": MAX_ROUNDS}),
        (DEMO_MTLS, {}),
    ]
    for target, body in demos:
        text = json.dumps(body)
        meter.send("client", raw_request("POST", target, text.encode(), JSON), text)
    connection = client.http().post(HANDSHAKE, json={}).get_json()["connection_id"]
    for name in ("server", "client"):
        for operation in operations(lab.documents[name]):
            if operation.method != "GET":
                continue
            target = operation.url(connection)
            meter.send(name, raw_request("GET", target), "no body")
            meter.send(name, raw_request("GET", target, b" " * LIMIT, JSON), "4 MiB body")
    meter.check("The heaviest legitimate requests")
