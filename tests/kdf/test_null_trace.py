"""The step trace is injected: a handshake given no trace runs the same protocol and
records nothing (kdf_lib.trace.NullTrace)."""

from __future__ import annotations

import pytest
from helpers.pair import Pair, client_config, connect
from helpers.pki import server_config

from kdf_lib.handshake import ClientHandshake, ServerHandshake, Session
from kdf_lib.role import Role
from kdf_lib.trace import NullTrace, StepKind, Trace

SUITES = ("TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")


def _full_and_resumed(suite: str, *, traced: bool) -> list[Pair]:
    sessions: dict[bytes, Session] = {}
    full = connect(suite, sessions=sessions, traced=traced)
    resumed = connect(suite, resume=full.client.session, sessions=sessions, traced=traced)
    assert not full.client_conn.resumed and resumed.client_conn.resumed
    return [full, resumed]


def _secret_values(pair: Pair) -> list[bytes]:
    """Every secret of the pair's connection: master secret, key block, each key."""
    revealed = pair.client_conn.reveal_secrets()
    assert revealed == pair.server_conn.reveal_secrets()
    return [bytes.fromhex(v) for v in revealed.values() if v]


def _values(obj: object) -> list[object]:
    """``obj`` and everything it holds: attributes, dataclass fields, items."""
    if isinstance(obj, dict):
        children: list[object] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        return [obj]
    return [obj, *(v for child in children for v in _values(child))]


def _holds(obj: object, secret: bytes) -> bool:
    """Whether anything ``obj`` holds is ``secret`` or shows it in hex."""
    return any(
        v == secret or (isinstance(v, str | bytes) and secret.hex() in str(v)) for v in _values(obj)
    )


@pytest.mark.parametrize("suite", SUITES)
def test_a_handshake_without_a_trace_completes_with_identical_keys_and_an_empty_trace(suite):
    for pair in _full_and_resumed(suite, traced=False):
        for machine in (pair.client, pair.server):
            assert isinstance(machine.trace, NullTrace)
            assert machine.trace.actor == machine.side
        assert pair.client.state.value == pair.server.state.value == "established"
        assert pair.client_conn.fingerprints() == pair.server_conn.fingerprints()
        assert pair.client_conn.reveal_secrets() == pair.server_conn.reveal_secrets()
        assert pair.server_conn.open(pair.client_conn.seal(b"ping")) == b"ping"
        assert pair.client_conn.open(pair.server_conn.seal(b"pong")) == b"pong"
        for machine in (pair.client, pair.server):
            assert machine.trace.steps == []
            assert machine.trace.to_json(reveal_secrets=True) == []
            assert machine.summary(reveal_secrets=True)["trace"] == []
            machine.compact(reveal_secrets=True)
            assert machine.summary()["trace"] == []
            assert machine.trace.steps == [] and machine.trace._frozen is None


@pytest.mark.parametrize("suite", SUITES)
def test_a_summary_has_the_same_fields_with_or_without_a_trace(suite):
    for traced, untraced in zip(
        _full_and_resumed(suite, traced=True), _full_and_resumed(suite, traced=False), strict=True
    ):
        for with_trace, without in (
            (traced.client, untraced.client),
            (traced.server, untraced.server),
        ):
            assert with_trace.trace.steps
            assert list(with_trace.summary(reveal_secrets=True)) == list(
                without.summary(reveal_secrets=True)
            )


@pytest.mark.parametrize("suite", SUITES)
def test_the_null_trace_never_holds_a_secret(suite):
    for pair in _full_and_resumed(suite, traced=False):
        for _ in range(6):  # past the traced data steps a real trace would keep
            pair.server_conn.open(pair.client_conn.seal(b"data"))
        secrets = _secret_values(pair)
        assert secrets
        for machine in (pair.client, pair.server):
            assert not any(_holds(machine.trace, s) for s in secrets)
    # ...whereas a real trace, revealing secrets, does hold them: the check can see them.
    traced = connect(SUITES[0])
    assert any(_holds(traced.client.trace, s) for s in _secret_values(traced))


def test_the_null_trace_drops_steps_without_fingerprinting_them():
    trace = NullTrace(Role.CLIENT)
    trace.add(StepKind.MASTER_SECRET, "m", "p", secrets={"master_secret": b"\x01" * 48}, x=1)
    trace.freeze(reveal_secrets=True)
    assert trace.steps == [] and trace.to_json(reveal_secrets=True) == []


def test_a_trace_for_the_other_side_is_refused():
    with pytest.raises(ValueError, match="client trace"):
        ClientHandshake(client_config(), trace=Trace(Role.SERVER))
    with pytest.raises(ValueError, match="server trace"):
        ServerHandshake(server_config(), trace=Trace(Role.CLIENT))
