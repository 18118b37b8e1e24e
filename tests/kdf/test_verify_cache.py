"""The client's cache of server-chain verification results (kdf_lib.pki.ChainVerificationCache):
what it keys on, what it still checks on every handshake, and how the trace shows a hit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from helpers.pair import client_config, connect
from helpers.pki import NOW, SERVER_NAME, identity, server_config

from kdf_lib import pki
from kdf_lib.errors import BadCertificate, CertificateExpired, UnknownCA
from kdf_lib.handshake import ClientHandshake, ServerHandshake
from kdf_lib.role import Role
from kdf_lib.trace import StepKind, Trace


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    pki.SERVER_CHAIN_CACHE.clear()
    yield
    pki.SERVER_CHAIN_CACHE.clear()


def _verify(
    cache: pki.ChainVerificationCache,
    chain: tuple[object, ...] | None = None,
    anchors: tuple[object, ...] | None = None,
    name: str = SERVER_NAME,
    now: datetime = NOW,
    key_exchange: str = "rsa",
) -> bool:
    ca, server = identity()
    _, cached = cache.verify(
        chain or (server.certificate,),  # type: ignore[arg-type]
        anchors or (ca.certificate,),  # type: ignore[arg-type]
        name,
        now=now,
        key_exchange=key_exchange,
    )
    return cached


def _verify_step(client: ClientHandshake) -> dict[str, object]:
    steps = [s for s in client.trace.steps if s.kind is StepKind.VERIFY_CERTIFICATE]
    assert len(steps) == 1
    return steps[0].data


def _handshake_at(now: datetime) -> ClientHandshake:
    client = ClientHandshake(client_config(), trace=Trace(Role.CLIENT), now=lambda: now)
    server = ServerHandshake(server_config(), lookup_session={}.get)
    client.receive_server_flight(server.receive_client_hello(client.client_hello()))
    return client


def test_second_handshake_takes_the_result_from_the_cache() -> None:
    first = connect()
    second = connect()
    assert _verify_step(first.client)["cached"] is False
    assert _verify_step(second.client)["cached"] is True
    assert _verify_step(second.client)["sha256"] == _verify_step(first.client)["sha256"]
    assert len(pki.SERVER_CHAIN_CACHE) == 1


def test_expired_chain_is_refused_even_when_cached() -> None:
    _, server = identity()
    assert _handshake_at(NOW).trace.steps  # verified and cached at NOW
    after = server.certificate.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(CertificateExpired):
        _handshake_at(after)
    before = server.certificate.not_valid_before_utc - timedelta(seconds=1)
    with pytest.raises(CertificateExpired):
        _handshake_at(before)
    # Still a hit at a time the chain is valid: the refusals did not poison the entry.
    assert _verify_step(_handshake_at(NOW))["cached"] is True


def test_expired_trust_anchor_is_refused_even_when_cached() -> None:
    ca, _ = identity()
    cache = pki.ChainVerificationCache()
    assert _verify(cache) is False
    with pytest.raises(CertificateExpired):
        _verify(cache, now=ca.certificate.not_valid_after_utc + timedelta(seconds=1))


def test_a_different_trust_store_does_not_hit() -> None:
    ca, _ = identity()
    other_ca = pki.create_ca("Another CA", now=NOW, key_size=2048)
    cache = pki.ChainVerificationCache()
    assert _verify(cache) is False
    assert _verify(cache, anchors=(ca.certificate, other_ca.certificate)) is False
    with pytest.raises(UnknownCA):
        _verify(cache, anchors=(other_ca.certificate,))
    assert _verify(cache) is True


def test_a_different_name_does_not_hit_and_a_wrong_one_is_refused() -> None:
    ca, _ = identity()
    server = pki.issue_server_certificate(
        ca, SERVER_NAME, now=NOW, extra_names=("alias.example",), key_size=2048
    )
    cache = pki.ChainVerificationCache()
    assert _verify(cache, chain=(server.certificate,)) is False
    assert _verify(cache, chain=(server.certificate,), name="alias.example") is False
    assert _verify(cache, chain=(server.certificate,), name="alias.example") is True
    with pytest.raises(BadCertificate):
        _verify(cache, chain=(server.certificate,), name="elsewhere.example")


def test_the_key_exchange_is_part_of_the_key() -> None:
    cache = pki.ChainVerificationCache()
    assert _verify(cache, key_exchange="rsa") is False
    assert _verify(cache, key_exchange="ecdhe") is False
    assert _verify(cache, key_exchange="rsa") is True


def test_a_different_chain_does_not_hit() -> None:
    ca, _ = identity()
    other = pki.issue_server_certificate(ca, SERVER_NAME, now=NOW, key_size=2048)
    cache = pki.ChainVerificationCache()
    assert _verify(cache) is False
    assert _verify(cache, chain=(other.certificate,)) is False


def test_failures_are_not_cached() -> None:
    ca, _ = identity()
    stranger = pki.create_ca("Stranger CA", now=NOW, key_size=2048)
    forged = pki.issue_server_certificate(stranger, SERVER_NAME, now=NOW, key_size=2048)
    cache = pki.ChainVerificationCache()
    for _ in range(2):
        with pytest.raises(UnknownCA):
            _verify(cache, chain=(forged.certificate,), anchors=(ca.certificate,))
    assert len(cache) == 0


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    ca, _ = identity()
    others = [
        pki.issue_server_certificate(ca, SERVER_NAME, now=NOW, key_size=2048) for _ in range(2)
    ]
    cache = pki.ChainVerificationCache(maxsize=2)
    assert _verify(cache) is False
    assert _verify(cache, chain=(others[0].certificate,)) is False
    assert _verify(cache) is True  # the run's certificate is now the most recently used
    assert _verify(cache, chain=(others[1].certificate,)) is False
    assert len(cache) == 2
    assert _verify(cache) is True
    assert _verify(cache, chain=(others[0].certificate,)) is False  # evicted


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        pki.ChainVerificationCache(maxsize=0)
