"""POST /demo/resumption: how a fleet resumes sessions, and what a stolen ticket key costs.

A simulation with kdf_lib's real machines in this process, not calls to server_svc: a fleet of
``replicas`` servers with one certificate, and ``clients`` clients that each make a session and
then resume it ``rounds`` times, every handshake sent to a replica the load balancer picks at
random. Three ways of keeping sessions are compared, as real fleets moved between them:

- a session cache in each replica: a resumption finds its session only on the replica that made
  it, about 1 in ``replicas`` of the time;
- one cache shared by every replica (server_svc's Redis store): every resumption succeeds;
- session tickets (RFC 5077) under a key every replica holds: every resumption succeeds, and the
  servers keep nothing per session.

Then the ticket key is stolen: every recorded session whose ticket it sealed opens, the ECDHE
one that issued the ticket too, because the ticket carries the master secret and crosses the
wire in clear. After two rotations the stolen key no longer opens new tickets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from flask import Blueprint, jsonify

from kdf_lib import pki
from kdf_lib.handshake import ClientConfig, ClientHandshake, ServerConfig, ServerHandshake, Session
from kdf_lib.messages import Fields, as_int
from kdf_lib.suites import SUITES
from kdf_lib.tickets import TicketKey, TicketKeys
from lab_analysis.diagnose import decrypt_with_ticket_key
from lab_analysis.recorded import RecordedHandshake
from lab_common.contract import DEMO_RESUMPTION
from lab_common.http import json_body

from .demos import TRANSFER, Report

bp = Blueprint("resumption_demo", __name__)

SUITE = SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
SERVER_NAME = "server"
#: Bounds that keep one demo request under the lab's CPU bound for a request (about 75
#: handshakes at most: docs/security.md, "Cheap requests").
MAX_REPLICAS, MAX_CLIENTS, MAX_ROUNDS = 9, 8, 2

RESUMPTION = (
    "A client resumes a session to skip the key exchange: one round trip and no public-key "
    "operation. In a fleet, the resuming handshake may reach any replica. If each replica keeps "
    "its own session cache, only the one that made the session can resume it: about 1 in N, "
    "which is what large sites saw before they shared their caches. A cache shared by every "
    "replica, or a session ticket that the client carries and every replica can open, resumes "
    "them all. A ticket carries the session's master secret, sealed under the ticket key: whoever "
    "steals that key opens every recorded session whose ticket it sealed, forward-secret ECDHE "
    "sessions included. Hence ticket keys are rotated and never written to disk in clear."
)


@dataclass
class _Fleet:
    """Replicas that differ only in how they keep sessions."""

    caches: list[dict[bytes, Session]]
    tickets: TicketKeys | None

    def server(self, replica: int) -> ServerHandshake:
        cache_of_replica = self.caches[replica % len(self.caches)]
        return ServerHandshake(
            _identity(), lookup_session=cache_of_replica.get, tickets=self.tickets
        )

    def keep(self, replica: int, server: ServerHandshake) -> None:
        if server.session_to_cache is not None:
            self.caches[replica % len(self.caches)][server.session_to_cache.session_id] = (
                server.session_to_cache
            )


@cache
def _pki() -> tuple[pki.Issued, pki.Issued]:
    now = datetime.now(UTC)
    ca = pki.create_ca("Resumption demo CA", now=now)
    return ca, pki.issue_server_certificate(ca, SERVER_NAME, now=now)


def prepare() -> None:
    """Make the simulated fleet's certificates now (client_svc's gunicorn does it as a worker
    starts): RSA key generation takes tens to hundreds of milliseconds, too much for a request."""
    _identity()


@cache
def _identity() -> ServerConfig:
    _, server = _pki()
    return ServerConfig((server.certificate,), server.private_key, cipher_suites=(SUITE,))


def _client(resume: Session | None, tickets: bool) -> ClientHandshake:
    ca, _ = _pki()
    config = ClientConfig((ca.certificate,), SERVER_NAME, (SUITE,), session_tickets=tickets)
    return ClientHandshake(config, resume=resume)


@dataclass
class _Run:
    """One handshake as it crossed the wire, and the two messages sent on it."""

    client: ClientHandshake
    server: ServerHandshake
    recorded: RecordedHandshake
    client_records: bytes
    server_records: bytes


def _handshake(fleet: _Fleet, replica: int, resume: Session | None) -> _Run:
    client = _client(resume, fleet.tickets is not None)
    server = fleet.server(replica)
    hello = client.client_hello()
    flight = server.receive_client_hello(hello)
    finish = client.receive_server_flight(flight)
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    if reply:
        client.receive_server_finished(reply, server.new_session_ticket)
    fleet.keep(replica, server)
    assert client.connection is not None and server.connection is not None
    recorded = RecordedHandshake(
        hello,
        flight,
        finish.client_key_exchange,
        finish.finished_record,
        reply or flight.finished_record or b"",
        new_session_ticket=server.new_session_ticket,
    )
    client_records = client.connection.seal(f"{TRANSFER}, PIN 4711".encode())
    server_records = server.connection.seal(server.connection.open(client_records))
    return _Run(client, server, recorded, client_records, server_records)


def _resumption_rate(
    fleet: _Fleet, replicas: int, clients: int, rounds: int, rng: random.Random
) -> tuple[float, list[_Run]]:
    runs, resumed = [], 0
    for _ in range(clients):
        first = _handshake(fleet, rng.randrange(replicas), None)
        session = first.client.session
        runs.append(first)
        for _ in range(rounds):
            again = _handshake(fleet, rng.randrange(replicas), session)
            runs.append(again)
            if again.client.connection is not None and again.client.connection.resumed:
                resumed += 1
            session = again.client.session or session
    return resumed / (clients * rounds), runs


def run_resumption(replicas: int, clients: int, rounds: int) -> dict[str, Any]:
    report = Report(
        "resumption", "Resumption across replicas: caches, a shared cache, tickets", RESUMPTION
    )
    rng = random.Random(f"{replicas}/{clients}/{rounds}")  # noqa: S311 (the load balancer's dice)
    ring = TicketKeys(TicketKey.generate())
    fleets = {
        "per_replica_cache": _Fleet([{} for _ in range(replicas)], None),
        "shared_cache": _Fleet([{}], None),
        "tickets": _Fleet([{} for _ in range(replicas)], ring),
    }
    rates: dict[str, float] = {}
    recorded_with_tickets: list[_Run] = []
    for name, fleet in fleets.items():
        rate, runs = _resumption_rate(fleet, replicas, clients, rounds, rng)
        rates[name] = round(rate, 3)
        if name == "tickets":
            recorded_with_tickets = runs
        report.step(
            "server",
            f"{name.replace('_', ' ')}: {rate:.0%} of resumptions resumed",
            f"{clients} clients, {rounds} resumptions each, each handshake sent to one of "
            f"{replicas} replicas at random",
        )
    # The eavesdropper recorded the ticket fleet's handshakes, and steals the ticket key.
    stolen = [decrypt_with_ticket_key(r.recorded, ring, r.client_records, r.server_records)
              for r in recorded_with_tickets]  # fmt: skip
    opened = sum(1 for result in stolen if result.decrypted)
    example = next((result for result in stolen if result.decrypted), None)
    report.step(
        "attacker",
        "steals the ticket key and opens the recordings",
        f"{opened} of {len(stolen)} recorded sessions open, full ECDHE handshakes included: "
        + ("; ".join(example.findings) if example else "none"),
    )
    later = ring.rotated(TicketKey.generate()).rotated(TicketKey.generate())
    fresh = _handshake(_Fleet([{}], later), 0, None)
    after_rotation = decrypt_with_ticket_key(
        fresh.recorded, ring, fresh.client_records, fresh.server_records
    )
    report.step(
        "attacker",
        "tries the stolen key after two rotations",
        f"a new session's ticket: {after_rotation.why}",
    )
    return report.answer(
        {
            "replicas": replicas,
            "resumption_rate": rates,
            "recorded_sessions": len(stolen),
            "opened_with_stolen_ticket_key": opened,
            "opened_after_two_rotations": after_rotation.decrypted,
        },
        plaintext=(example.client_plaintext or b"").decode() if example else None,
    )


@bp.post(DEMO_RESUMPTION)
def resumption() -> Any:
    with Fields(json_body(optional=True), "resumption request") as f:
        replicas = f.optional(
            "replicas", lambda v, n: as_int(v, n, minimum=2, maximum=MAX_REPLICAS), 3
        )
        clients = f.optional(
            "clients", lambda v, n: as_int(v, n, minimum=1, maximum=MAX_CLIENTS), MAX_CLIENTS
        )
        rounds = f.optional(
            "rounds", lambda v, n: as_int(v, n, minimum=1, maximum=MAX_ROUNDS), MAX_ROUNDS
        )
    return jsonify(run_resumption(replicas, clients, rounds))
