"""server_svc replicas sharing their state in a real Redis (STATE_BACKEND=redis): any replica
serves any request of any connection, nothing secret is in Redis in clear, a stale replica is
fenced off, and a Redis that is down or lost its data fails requests cleanly."""

from __future__ import annotations

import base64
import concurrent.futures
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.redis_server import RedisServer, running_redis, unused_port
from helpers.transport import FlaskTransport
from helpers.tshark import dissect

from kdf_lib import keylog
from lab_common.contract import (
    CAPTURE_HEADER,
    FINISH,
    HANDSHAKE,
    HEALTH,
    HELLO,
    MAX_CAPTURED_MESSAGES,
    MESSAGE,
    SESSION,
    SESSION_PCAP,
    path,
)
from lab_common.errors import ServiceError
from lab_common.redis_state import SOCKET_TIMEOUT_S, Entry, RedisState
from lab_common.sealing import StateSealer, write_key_file


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_settings(redis_server: RedisServer, tmp_path: Path) -> dict[str, Any]:
    redis_server.client().flushall()
    key_file = tmp_path / "state.key"
    write_key_file(key_file)
    return {
        "STATE_BACKEND": "redis",
        "REDIS_URL": redis_server.url,
        "STATE_KEY_FILE": str(key_file),
    }


class Alternating:
    """client_svc's transport to several server_svc replicas, one request each in turn."""

    def __init__(self, *transports: FlaskTransport) -> None:
        self.transports = transports
        self._next = itertools.cycle(transports)

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        return next(self._next).request(method, path, body)


@pytest.fixture
def replicas(make_server, redis_settings):
    return [make_server(**redis_settings) for _ in range(2)]


@pytest.fixture
def fleet_client(make_client_app, replicas, redis_settings, tmp_path):
    """client_svc, its own state in the same Redis, to server_svc's two replicas in turn."""
    transport = Alternating(*(FlaskTransport(app) for app in replicas))
    keylog_file = tmp_path / "keylog"
    return make_client_app(
        TRANSPORT=transport, SSLKEYLOGFILE=str(keylog_file), **redis_settings
    ).test_client()


def handshake(client, **body) -> dict[str, Any]:
    answer = client.post(HANDSHAKE, json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


@pytest.mark.parametrize("key_exchange", ["ecdhe", "dhe"])
def test_any_replica_serves_any_request_of_a_connection(fleet_client, replicas, key_exchange):
    # The server's ephemeral key (an EC key, or a DH exponent) crosses over in the sealed state.
    result = handshake(fleet_client, key_exchange=key_exchange)
    # hello went to one replica, finish to the other: the half-open state crossed over.
    assert [len(t.received) for t in fleet_client.application.config["TRANSPORT"].transports] == [
        1,
        1,
    ]
    for number in range(4):
        answer = fleet_client.post(MESSAGE, json={"plaintext": f"message {number}"})
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["reply"]["plaintext"].endswith(f"message {number}")
    for replica in replicas:
        view = replica.test_client().get(path(SESSION, result["connection_id"])).get_json()
        assert view["messages"] == 4
        assert view["sequence_numbers"] == {"read": 5, "write": 5}


def test_a_handshake_costs_four_redis_round_trips_and_a_message_five(fleet_client, replicas):
    """What the consistency rules need, and no more. A handshake: server_svc creates the
    connection at the hello, takes the lock and reads it at the finish, and writes it back with
    its session in one pipeline; client_svc keeps the connection, its session and "latest" in
    one. A message: client_svc takes the lock and reads (one script), keeps the sequence number's
    advance before sealing, writes back and lets go after the reply; server_svc takes the lock
    and reads, then makes one write before sealing that is also its last (it lets the lock go):
    sealing changes nothing that is kept. (Without a connection_id, client_svc first asks which
    connection is the latest: one more.)"""
    client_state = fleet_client.application.extensions["client_service"].store.state
    server_states = [app.extensions["server_service"].store.state for app in replicas]
    for _ in range(2):  # Redis learns the scripts, and each replica has served a hello
        handshake(fleet_client, key_exchange="ecdhe")
    client_before = client_state.round_trips
    server_before = sum(state.round_trips for state in server_states)
    connection_id = handshake(fleet_client, key_exchange="ecdhe")["connection_id"]
    assert client_state.round_trips - client_before == 1
    assert sum(state.round_trips for state in server_states) - server_before == 3
    for number in range(6):  # past the four messages whose steps the trace keeps
        client_before = client_state.round_trips
        server_before = sum(state.round_trips for state in server_states)
        answer = fleet_client.post(
            MESSAGE, json={"plaintext": f"message {number}", "connection_id": connection_id}
        )
        assert answer.status_code == 200, answer.get_json()
        assert client_state.round_trips - client_before == 3
        assert sum(state.round_trips for state in server_states) - server_before == 2


def test_a_resumption_costs_two_round_trips_more_than_a_full_handshake(fleet_client, replicas):
    """Each side reads the session it resumes (client_svc for its hello, server_svc to look up
    the ID the hello offers): one read each, on top of a full handshake's four."""
    client_state = fleet_client.application.extensions["client_service"].store.state
    server_states = [app.extensions["server_service"].store.state for app in replicas]
    session_id = handshake(fleet_client, key_exchange="ecdhe")["session_id"]
    handshake(fleet_client, resume=session_id)  # each replica has served a hello
    client_before = client_state.round_trips
    server_before = sum(state.round_trips for state in server_states)
    assert handshake(fleet_client, resume=session_id)["resumed"] is True
    assert client_state.round_trips - client_before == 2
    assert sum(state.round_trips for state in server_states) - server_before == 4


def test_a_handshake_ends_in_one_round_trip_even_when_redis_forgot_its_scripts(
    fleet_client, redis_server
):
    """client_svc keeps the connection, its session and "latest" in one pipeline. A Redis that
    restarted has no scripts cached: each script it refuses (NOSCRIPT, so not run) is loaded
    and run on its own, and all three are kept."""
    client_state = fleet_client.application.extensions["client_service"].store.state
    first = handshake(fleet_client, key_exchange="ecdhe")
    before = client_state.round_trips
    handshake(fleet_client, key_exchange="ecdhe")
    assert client_state.round_trips - before == 1
    redis_server.client().script_flush()
    full = handshake(fleet_client, key_exchange="ecdhe")
    assert full["connection_id"] != first["connection_id"]
    # Kept: the session resumes, and a message without a connection ID goes on the latest.
    assert handshake(fleet_client, resume=full["session_id"])["resumed"] is True
    answer = fleet_client.post(MESSAGE, json={"plaintext": "to the latest"})
    assert answer.status_code == 200, answer.get_json()


def test_a_session_made_on_one_replica_resumes_on_the_other(fleet_client):
    full = handshake(fleet_client)
    resumed = handshake(fleet_client, resume=full["session_id"])
    assert resumed["resumed"] is True


def test_redis_holds_no_secret_in_clear(fleet_client, redis_server):
    """Both services' state, scanned key by key: no master secret, raw or in hex."""
    results = [handshake(fleet_client, key_exchange=kx) for kx in ("rsa", "ecdhe", "dhe", "rsa")]
    for _ in range(2):
        fleet_client.post(MESSAGE, json={"plaintext": "secret-free"})
    log_text = Path(fleet_client.application.extensions["settings"].sslkeylogfile).read_text()
    masters = [
        keylog.find_master_secret(log_text, bytes.fromhex(r["client_random"])) for r in results
    ]
    assert all(masters)
    dump = b""
    db = redis_server.client()
    for key in db.scan_iter():
        kind = db.type(key)
        if kind == b"hash":
            dump += b"".join(k + v for k, v in db.hgetall(key).items())
        elif kind == b"string":
            dump += db.get(key) or b""
    assert dump  # the state is there, sealed
    for master in masters:
        assert master not in dump and master.hex().encode() not in dump


def test_a_replica_that_lost_its_lease_is_fenced_off(fleet_client, replicas, redis_server):
    result = handshake(fleet_client)
    stale = replicas[0].extensions["server_service"].store
    key = stale._key(result["connection_id"])
    with pytest.raises(ServiceError) as refused, stale.update(result["connection_id"]) as held:
        # The holder is paused past its lease: the lock goes, and the other replica moves
        # the connection on.
        redis_server.client().delete(key + ":lock")
        for _ in range(2):
            assert fleet_client.post(MESSAGE, json={"plaintext": "meanwhile"}).status_code == 200
        held.messages += 100
        stale.save(held)
    assert refused.value.code == "state_conflict" and refused.value.status == 409
    view = replicas[1].test_client().get(path(SESSION, result["connection_id"])).get_json()
    assert view["messages"] == 2  # the stale write never landed


def test_a_refused_late_write_shows_in_the_trace_once(fleet_client, replicas, redis_server):
    result = handshake(fleet_client)
    stale = replicas[0].extensions["server_service"].store
    stale.state.replica = "paused-replica"
    key = stale._key(result["connection_id"])
    with pytest.raises(ServiceError), stale.update(result["connection_id"]) as held:
        redis_server.client().delete(key + ":lock")
        assert fleet_client.post(MESSAGE, json={"plaintext": "meanwhile"}).status_code == 200
        stale.save(held)
    assert redis_server.client().hget(key, "refused") == b"1"

    def conflicts() -> list[dict[str, Any]]:
        view = replicas[1].test_client().get(path(SESSION, result["connection_id"])).get_json()
        return [step for step in view["trace"] if step["kind"] == "state_conflict"]

    # The first reader after the refusal shows it; it is shown once, not again by later readers.
    for _ in range(3):
        assert fleet_client.post(MESSAGE, json={"plaintext": "after"}).status_code == 200
        (step,) = conflicts()
        assert step["replica"] == "paused-replica" and step["actor"] == "server"
        # Version 1 at hello, 2 after finish (what the stale replica read); the message's
        # write before sealing made 3, and was its last (nothing changes after it).
        assert step["data"] == {"read_version": 2, "found_version": 3}
        assert "sealed nothing" in step["purpose"]


def test_a_redis_that_is_down_answers_503_within_two_seconds(make_server, redis_settings):
    down = make_server(**{**redis_settings, "REDIS_URL": f"redis://127.0.0.1:{unused_port()}/0"})
    server = down.test_client()
    started = time.monotonic()
    answer = server.post(HELLO, json={"client_random": "00" * 32, "cipher_suites": [
        "TLS_RSA_WITH_AES_256_CBC_SHA256"]})  # fmt: skip
    assert time.monotonic() - started < 2.0
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "state_unavailable"
    health = server.get(HEALTH).get_json()
    assert health["state"] == "unavailable" and health["state_backend"] == "redis"


def test_a_write_whose_answer_is_late_is_given_up_not_sent_again(redis_server, tmp_path):
    """Redis holds the compare-and-set past the socket timeout (CLIENT PAUSE ... WRITE). The
    request gets 503 within the timeout and the write is given up, never sent again: redis-py
    would by default send it again and again until one ran; a write whose first run landed late
    would then refuse itself, and a lock lock out its own holder."""
    key_file = tmp_path / "state.key"
    write_key_file(key_file)
    state = RedisState(redis_server.url, StateSealer.from_file(str(key_file)), "lab:test")
    key = state.key("conn", "late")
    assert state.create(key, b"state", 60)  # connected, and the scripts loaded
    entry = Entry(key, 1, b"state", {}, {})
    db = redis_server.client()
    held_ms = int(SOCKET_TIMEOUT_S * 1000) + 1000
    db.execute_command("CLIENT", "PAUSE", held_ms, "WRITE")
    started = time.monotonic()
    with pytest.raises(ServiceError) as late:
        state.write(entry, b"newer", 60)
    assert late.value.code == "state_unavailable"
    assert time.monotonic() - started < 2.0
    time.sleep(held_ms / 1000 + 0.5)  # the pause is over
    # The one copy sent left with its connection when the client gave up; none was sent again.
    assert db.hget(key, "v") == b"1"
    assert db.hget(key, "refused") is None


def test_scripts_run_on_a_connection_of_each_thread_and_each_process(
    redis_server, tmp_path, monkeypatch
):
    """The scripts skip redis-py's pool (RedisState.run): each thread has its own connection,
    so that two requests never read each other's replies, and a forked process never uses the
    socket it inherited from its parent, which the parent still reads."""
    key_file = tmp_path / "state.key"
    write_key_file(key_file)
    state = RedisState(redis_server.url, StateSealer.from_file(str(key_file)), "lab:test")
    db = redis_server.client()

    def script_clients() -> set[str]:
        listed = db.execute_command("CLIENT", "LIST").decode().split("\n")
        return {line.split()[0] for line in listed if "cmd=evalsha" in line}

    before = script_clients()
    assert state.create(state.key("conn", "main"), b"state", 60)
    mine = script_clients() - before
    assert len(mine) == 1
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # its thread lives for the block
        assert pool.submit(state.create, state.key("conn", "thread"), b"state", 60).result()
        theirs = script_clients() - before - mine
        assert len(theirs) == 1  # the thread's own
        assert state.create(state.key("conn", "main-again"), b"state", 60)
        assert script_clients() - before == mine | theirs  # this thread's connection again
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as a forked child sees it
    assert state.create(state.key("conn", "child"), b"state", 60)
    assert len(script_clients() - before - mine - theirs) == 1


def test_connections_outlive_a_redis_restart(fleet_client, redis_server):
    handshake(fleet_client)
    redis_server.stop()
    refused = fleet_client.post(MESSAGE, json={"plaintext": "while down"})
    assert refused.status_code == 503
    assert refused.get_json()["error"]["delivery"] == "not_delivered"
    redis_server.start()  # appendfsync always: every answered write is in the AOF
    fresh = handshake(fleet_client)
    answer = fleet_client.post(
        MESSAGE, json={"plaintext": "after the restart", "connection_id": fresh["connection_id"]}
    )
    assert answer.status_code == 200


def test_when_server_svc_lost_its_state_the_connection_is_refused_and_the_session_starts_over(
    fleet_client, redis_server
):
    first = handshake(fleet_client)
    db = redis_server.client()
    db.delete(*db.keys("lab:server:*"))
    lost = fleet_client.post(MESSAGE, json={"plaintext": "after the loss"})
    assert lost.status_code == 409
    assert lost.get_json()["error"]["code"] == "connection_lost"
    assert lost.get_json()["error"]["delivery"] == "not_delivered"
    again = handshake(fleet_client, resume=first["session_id"])
    assert again["resumed"] is False  # the session went with the data: a full handshake


def test_when_redis_lost_everything_both_sides_refuse_cleanly(fleet_client, redis_server):
    first = handshake(fleet_client)
    redis_server.client().flushall()
    body = {"plaintext": "after the loss", "connection_id": first["connection_id"]}
    gone = fleet_client.post(MESSAGE, json=body)
    assert gone.status_code == 404
    assert gone.get_json()["error"]["code"] == "unknown_connection"
    assert fleet_client.post(MESSAGE, json={"plaintext": "latest?"}).status_code == 409
    resume = fleet_client.post(HANDSHAKE, json={"resume": first["session_id"]})
    assert resume.status_code == 404
    assert resume.get_json()["error"]["code"] == "unknown_session"


def test_client_replicas_share_connections_sessions_and_the_latest_one(
    make_client_app, replicas, redis_settings, redis_server
):
    transport = Alternating(*(FlaskTransport(app) for app in replicas))
    clients = [
        make_client_app(TRANSPORT=transport, **redis_settings).test_client() for _ in range(2)
    ]
    first = handshake(clients[0], key_exchange="ecdhe")
    # The other replica sends on it, as the latest connection and by its ID.
    for number, client in enumerate(clients * 2):
        body = {"plaintext": f"from replica {number % 2}"}
        if number >= 2:
            body["connection_id"] = first["connection_id"]
        answer = client.post(MESSAGE, json=body)
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["connection_id"] == first["connection_id"]
        assert answer.get_json()["sent"]["seq"] == number + 1
    view = clients[1].get(path(SESSION, first["connection_id"])).get_json()
    assert view["messages"] == 4 and view["exchanges"]
    assert handshake(clients[1], resume=first["session_id"])["resumed"] is True
    health = clients[0].get(HEALTH).get_json()
    assert health["state_backend"] == "redis" and health["state"] == "ok"
    assert health["connections"] == 2


def test_a_ticket_resumes_on_any_replica_and_its_key_is_sealed_in_redis(
    fleet_client, replicas, redis_server
):
    full = handshake(fleet_client, resumption="ticket")
    for _ in range(2):  # the hello reaches each replica in turn: both hold the same ring
        resumed = handshake(fleet_client, resume=full["session_id"], resumption="ticket")
        assert resumed["resumed"] is True
    ring = replicas[0].extensions["server_service"].tickets.ring()
    assert ring.current == replicas[1].extensions["server_service"].tickets.ring().current
    db = redis_server.client()
    dump = b"".join(db.get(key) or b"" for key in db.scan_iter() if db.type(key) == b"string")
    assert ring.current.aes_key not in dump and ring.current.aes_key.hex().encode() not in dump
    assert ring.current.mac_key.hex().encode() not in dump


def test_the_redis_store_keeps_the_groups_and_schemes_asked_for(fleet_client):
    first = handshake(
        fleet_client,
        key_exchange="ecdhe",
        supported_groups=["secp384r1"],
        signature_algorithms=["rsa_pkcs1_sha256"],
        extended_master_secret=True,
    )
    service = fleet_client.application.extensions["client_service"]
    with service.store.update(first["connection_id"]) as entry:
        request = entry.request
    assert request.supported_groups == ("secp384r1",)
    assert request.signature_algorithms == ("rsa_pkcs1_sha256",)
    assert request.extended_master_secret is True
    # A reconnect (after the server lost the connection) asks for them again.
    fresh = service._reconnect(entry)
    assert fresh.request.supported_groups == ("secp384r1",)
    assert fresh.request.signature_algorithms == ("rsa_pkcs1_sha256",)


@pytest.mark.parametrize(
    ("path_", "fault", "code"),
    [
        (FINISH, "answer", "decode_error"),  # client_svc's own fatal alert
        (FINISH, "restart", "connection_lost"),  # no alert: the transport gave up
    ],
)
def test_a_failed_handshake_read_back_from_redis_is_failed_with_its_code(
    make_client_app, make_server, replicas, redis_settings, path_, fault, code
):
    transport = FlaskTransport(replicas[0])
    client = make_client_app(TRANSPORT=transport, **redis_settings).test_client()
    session_id = handshake(client, key_exchange="ecdhe")["session_id"]
    if fault == "answer":
        transport.answer_edits[path_] = lambda body: {**body, "surprise": 1}
    else:
        transport.before.append(
            lambda where, body: transport.restart(make_server()) if where == path_ else None
        )
    answer = client.post(HANDSHAKE, json={"resume": session_id})
    error = answer.get_json()["error"]
    assert error["code"] == code, error
    view = client.get(path(SESSION, error["connection_id"])).get_json()
    assert (view["state"], view["error"]) == ("failed", code)
    # A fatal alert ends the session the resumption offered; a lost connection does not.
    service = client.application.extensions["client_service"]
    assert (service.store.session(session_id) is None) is (code != "connection_lost")


def test_client_svc_keeps_the_first_messages_records_sealed_beside_the_connection(
    make_client_app, replicas, redis_settings, redis_server, tmp_path
):
    """The Wireshark export's records in Redis: each kept message's in a sealed field beside the
    connection, written by the script that writes the state (no round trip of their own), none
    past the bound; any
    client_svc replica exports them, and Wireshark decrypts them with the key log."""
    transport = Alternating(*(FlaskTransport(app) for app in replicas))
    keylog_file = tmp_path / "keylog"
    clients = [
        make_client_app(
            TRANSPORT=transport, SSLKEYLOGFILE=str(keylog_file), **redis_settings
        ).test_client()
        for _ in range(2)
    ]
    cid = handshake(clients[0], key_exchange="ecdhe")["connection_id"]
    state = clients[0].application.extensions["client_service"].store.state
    texts = [f"message {n}" for n in range(MAX_CAPTURED_MESSAGES + 2)]
    round_trips: list[int] = []
    records: list[bytes] = []
    replies: list[str] = []
    for text in texts:
        before = state.round_trips
        answer = clients[0].post(MESSAGE, json={"plaintext": text, "connection_id": cid})
        assert answer.status_code == 200, answer.get_json()
        round_trips.append(state.round_trips - before)
        body = answer.get_json()
        records += [base64.b64decode(body[side]["record"]) for side in ("sent", "reply")]
        replies.append(body["reply"]["plaintext"])
    # A kept message costs what one past the bound does: its records ride on the state write.
    assert round_trips == [round_trips[0]] * len(texts)

    db = redis_server.client()
    # Beside the connection, not in it: reading the connection for a message does not fetch them.
    assert not [name for name in db.hgetall(state.key("conn", cid)) if name[:1] == b"m"]
    fields = db.hgetall(state.key("conn", cid) + ":attached")
    kept = {name for name in fields if name[:1] == b"m"}
    assert kept == {f"m{n}".encode() for n in range(MAX_CAPTURED_MESSAGES)}
    sealed = b"".join(fields[name] for name in kept)
    assert not any(record in sealed for record in records)

    answer = clients[1].get(path(SESSION_PCAP, cid))
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers[CAPTURE_HEADER] == "truncated"
    capture = tmp_path / "redis.pcapng"
    capture.write_bytes(answer.get_data())
    seen = dissect(capture, keylog_file=keylog_file)
    assert seen.problems == []
    assert seen.data_from("127.0.0.1") == "".join(texts[:MAX_CAPTURED_MESSAGES]).encode()
    assert seen.data_from("127.0.0.2") == "".join(replies[:MAX_CAPTURED_MESSAGES]).encode()
    assert f"holds {MAX_CAPTURED_MESSAGES} of its {len(texts)} messages" in seen.frames[-1].comment
