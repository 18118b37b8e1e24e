"""A TLS 1.2 client for server_svc straight from the benchmark: kdf_lib's ClientHandshake over
http.client, as client_svc drives it but with no service in between (RFC 5246 §7.3).

Used by the ``message`` section (one connection, then application data) and the ``memory``
section (many connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdf_lib import pki
from kdf_lib.handshake import ClientConfig, ClientHandshake, Connection, Session
from kdf_lib.messages import ServerFlight, decode_b64
from kdf_lib.role import Role
from kdf_lib.suites import SUITES
from kdf_lib.trace import Trace
from lab_common.contract import FINISH, HELLO

from .services import Certificates, HttpClient

__all__ = ["LabConnection", "client_config", "handshake"]


def client_config(certs: Certificates, suite: str) -> ClientConfig:
    """One suite offered, EMS and encrypt-then-MAC on (the defaults), the CA as the only anchor."""
    anchors = tuple(pki.load_certificate_chain(Path(certs.ca).read_bytes()))
    return ClientConfig(
        trust_anchors=anchors, server_name=certs.server_name, cipher_suites=(SUITES[suite],)
    )


@dataclass
class LabConnection:
    connection_id: str
    connection: Connection
    session: Session | None


def handshake(
    client: HttpClient, config: ClientConfig, resume: Session | None = None
) -> LabConnection:
    """POST /handshake/hello then /handshake/finish on server_svc; an established connection."""
    machine = ClientHandshake(config, resume=resume, trace=Trace(Role.CLIENT))
    answer = client.call("POST", HELLO, machine.client_hello().to_json())
    connection_id = str(answer.pop("connection_id"))
    flight = ServerFlight.from_json(answer)
    finish = machine.receive_server_flight(flight)
    reply = client.call("POST", FINISH, {"connection_id": connection_id, **finish.to_json()})
    if not flight.resumed:
        machine.receive_server_finished(
            decode_b64(reply["finished_record"], "finished_record", max_length=4096)
        )
    assert machine.connection is not None
    return LabConnection(connection_id, machine.connection, machine.session)
