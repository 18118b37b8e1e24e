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
from kdf_lib.role import Role
from kdf_lib.suites import DEFAULT_SUITE, SUITES, CipherSuite
from kdf_lib.tickets import TicketKeys
from kdf_lib.trace import Trace

from .pki import SERVER_NAME, identity, server_config


def client_config(
    *suites: CipherSuite | str, ems: bool = True, etm: bool = True, tickets: bool = False
) -> ClientConfig:
    ca, _ = identity()
    chosen = tuple(SUITES[s] if isinstance(s, str) else s for s in suites) or (DEFAULT_SUITE,)
    return ClientConfig(
        (ca.certificate,),
        SERVER_NAME,
        chosen,
        extended_master_secret=ems,
        encrypt_then_mac=etm,
        session_tickets=tickets,
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
    tickets: TicketKeys | None = None,
) -> Pair:
    """Run a complete handshake in memory and return both ends; ``traced=False`` gives the
    machines no trace (they record nothing); with ``tickets`` the client offers RFC 5077
    tickets and the server issues and takes them under those keys."""
    store = {} if sessions is None else sessions
    client = ClientHandshake(
        client_config(*suites, ems=ems, etm=etm, tickets=tickets is not None),
        resume=resume,
        trace=Trace(Role.CLIENT) if traced else None,
    )
    server = ServerHandshake(
        server_config(),
        lookup_session=store.get,
        tickets=tickets,
        trace=Trace(Role.SERVER) if traced else None,
    )
    flight = server.receive_client_hello(client.client_hello())
    finish = client.receive_server_flight(flight)
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    if reply:
        client.receive_server_finished(reply, server.new_session_ticket)
    assert client.connection is not None and server.connection is not None
    assert server.session is not None
    if server.session_to_cache is not None:
        store[server.session_to_cache.session_id] = server.session_to_cache
    return Pair(client, server, client.connection, server.connection)
