"""An in-memory client/server pair built from kdf_lib's state machines (no HTTP, no JSON),
with the run's certificates (helpers.pki)."""

from __future__ import annotations

from dataclasses import dataclass

from kdf_lib.handshake import (
    ClientConfig,
    ClientHandshake,
    Connection,
    ServerHandshake,
    Session,
)
from kdf_lib.suites import DEFAULT_SUITE, SUITES, CipherSuite
from kdf_lib.trace import Trace

from .pki import SERVER_NAME, identity, server_config


def client_config(*suites: CipherSuite | str, ems: bool = True, etm: bool = True) -> ClientConfig:
    ca, _ = identity()
    chosen = tuple(SUITES[s] if isinstance(s, str) else s for s in suites) or (DEFAULT_SUITE,)
    return ClientConfig(
        (ca.certificate,), SERVER_NAME, chosen, extended_master_secret=ems, encrypt_then_mac=etm
    )


@dataclass
class Pair:
    client: ClientHandshake
    server: ServerHandshake
    client_conn: Connection
    server_conn: Connection


def connect(
    *suites: CipherSuite | str,
    ems: bool = True,
    etm: bool = True,
    resume: Session | None = None,
    sessions: dict[bytes, Session] | None = None,
    traced: bool = True,
) -> Pair:
    """Run a complete handshake in memory and return both ends; ``traced=False`` gives the
    machines no trace (they record nothing)."""
    store = {} if sessions is None else sessions
    client = ClientHandshake(
        client_config(*suites, ems=ems, etm=etm),
        resume=resume,
        trace=Trace("client") if traced else None,
    )
    server = ServerHandshake(
        server_config(), lookup_session=store.get, trace=Trace("server") if traced else None
    )
    flight = server.receive_client_hello(client.client_hello())
    finish = client.receive_server_flight(flight)
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    if reply:
        client.receive_server_finished(reply)
    assert client.connection is not None and server.connection is not None
    assert server.session is not None
    store[server.session.session_id] = server.session
    return Pair(client, server, client.connection, server.connection)
