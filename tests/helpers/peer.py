"""A hand-driven TLS client for attacking server_svc over HTTP.

kdf_lib's ClientHandshake does the protocol; :class:`Peer` sends its messages to server_svc
through Flask's test client and stops between the steps, so a test can change what travels.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from kdf_lib.handshake import (
    ClientConfig,
    ClientHandshake,
    Connection,
    Session,
)
from kdf_lib.kex import NamedGroup
from kdf_lib.messages import DEFAULT_GROUPS, ClientFinish, ClientKeyExchange, Finished, ServerFlight
from kdf_lib.record import ContentType, RecordProtection, connection_record_layers
from kdf_lib.role import Role
from kdf_lib.suites import SUITES
from kdf_lib.trace import Trace
from lab_common.contract import FINISH, HELLO, MESSAGE, SESSION, path

from .pki import SERVER_NAME, identity

RSA_SUITE = "TLS_RSA_WITH_AES_256_CBC_SHA256"
ECDHE_SUITE = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, reduced to what a client sees (the test client sends no Date header)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        error = self.json.get("error") if self.status >= 400 else None
        return None if error is None else error["code"]


def answer(response: Any) -> Answer:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k.lower() != "date"))
    return Answer(response.status_code, headers, response.get_data())


def post(http: Any, path: str, body: dict[str, Any]) -> Answer:
    return answer(http.post(path, data=json.dumps(body), content_type="application/json"))


class Peer:
    """One client connection to server_svc, driven step by step.

    ``hello()`` sends the ClientHello; ``prepare_finish()`` runs the client's side of the
    server flight and holds the second flight back; ``finish()`` sends it (or a tampered
    copy); ``complete()`` does all of it; ``send()`` protects application data.
    """

    def __init__(
        self,
        http: Any,
        *suites: str,
        ems: bool = True,
        etm: bool = True,
        resume: Session | None = None,
        groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS,
    ) -> None:
        ca, _ = identity()
        self.http = http
        self.config = ClientConfig(
            (ca.certificate,),
            SERVER_NAME,
            tuple(SUITES[s] for s in (suites or (RSA_SUITE,))),
            extended_master_secret=ems,
            encrypt_then_mac=etm,
            groups=groups,
        )
        self.handshake = ClientHandshake(self.config, resume=resume, trace=Trace(Role.CLIENT))
        self.connection_id = ""
        self.flight: ServerFlight | None = None
        self.hello_json: dict[str, Any] = {}
        self.second_flight: ClientFinish | None = None
        self.connection: Connection | None = None

    # -- the handshake, one step at a time --------------------------------------

    def hello_body(self) -> dict[str, Any]:
        return self.handshake.client_hello().to_json()

    def hello(self, body: dict[str, Any] | None = None) -> Answer:
        result = post(self.http, HELLO, body or self.hello_body())
        if result.status == 200:
            self.hello_json = result.json
            flight_json = dict(self.hello_json)
            self.connection_id = flight_json.pop("connection_id")
            self.flight = ServerFlight.from_json(flight_json)
        return result

    def prepare_finish(self) -> ClientFinish:
        assert self.flight is not None, "hello() first"
        self.second_flight = self.handshake.receive_server_flight(self.flight)
        return self.second_flight

    def finish_body(
        self,
        *,
        client_key_exchange: ClientKeyExchange | bool | None = True,
        finished_record: bytes | None = None,
    ) -> dict[str, Any]:
        """The /handshake/finish body; ``client_key_exchange=True`` keeps the client's own."""
        flight = self.second_flight
        assert flight is not None, "prepare_finish() first"
        cke = flight.client_key_exchange if client_key_exchange is True else client_key_exchange
        body: dict[str, Any] = {
            "connection_id": self.connection_id,
            "finished_record": b64(
                flight.finished_record if finished_record is None else finished_record
            ),
        }
        if cke:
            assert isinstance(cke, ClientKeyExchange)
            body["client_key_exchange"] = cke.to_json()
        return body

    def finish(self, body: dict[str, Any] | None = None) -> Answer:
        result = post(self.http, FINISH, body or self.finish_body())
        if result.status == 200 and result.json["finished_record"] is not None:
            self.connection = self.handshake.receive_server_finished(
                unb64(result.json["finished_record"])
            )
        elif result.status == 200:
            self.connection = self.handshake.connection
        return result

    def complete(self) -> Peer:
        """Run the whole handshake and check it worked."""
        hello = self.hello()
        assert hello.status == 200, hello.json
        if self.flight is not None and self.flight.resumed:
            self.second_flight = self.handshake.receive_server_flight(self.flight)
        else:
            self.prepare_finish()
        finished = self.finish()
        assert finished.status == 200, finished.json
        assert self.connection is not None
        return self

    # -- hand-made Finished records ----------------------------------------------

    def client_finished_record(self, verify_data: bytes, *, seq: int = 0) -> bytes:
        """A client Finished record with any verify_data, sealed under this handshake's keys."""
        writer = self.fresh_writer()
        writer.seq = seq
        return writer.seal(ContentType.handshake, Finished(verify_data).encode())

    def verify_data(self, label: Role) -> bytes:
        """verify_data for ``label`` (the client's or the server's) over the transcript up to
        the client's Finished, as the client computed it."""
        schedule = self.handshake._schedule
        assert schedule is not None
        transcript = self.handshake.transcript
        if self.second_flight is not None:
            transcript = transcript[: -len(Finished(b"\0" * 12).encode())]
        return schedule.verify_data(label, transcript)

    def fresh_writer(self) -> RecordProtection:
        """A client-to-server record layer with this handshake's keys at sequence number 0."""
        schedule = self.handshake._schedule
        assert schedule is not None
        writer, _ = connection_record_layers(
            schedule.keys,
            Role.CLIENT,
            encrypt_then_mac=bool(
                self.flight and self.flight.server_hello.extensions.encrypt_then_mac
            ),
        )
        return writer

    # -- application data --------------------------------------------------------

    def seal(self, plaintext: bytes) -> bytes:
        assert self.connection is not None
        return self.connection.seal(plaintext)

    def message(self, record: bytes, connection_id: str | None = None) -> Answer:
        return post(
            self.http,
            MESSAGE,
            {"connection_id": connection_id or self.connection_id, "record": b64(record)},
        )

    def send(self, plaintext: bytes) -> tuple[bytes, Answer]:
        """Seal ``plaintext`` and post it; returns the record sent and the answer."""
        record = self.seal(plaintext)
        return record, self.message(record)

    def open_reply(self, result: Answer) -> bytes:
        assert self.connection is not None
        return self.connection.open(unb64(result.json["record"]))

    def server_view(self) -> dict[str, Any]:
        view = self.http.get(path(SESSION, self.connection_id))
        assert view.status_code == 200
        result: dict[str, Any] = view.get_json()
        return result
