"""Properties of kdf_lib's record layer over every suite and both CBC MAC orders.

RFC 5246 §6.2 (records), RFC 7366 (encrypt-then-MAC), RFC 5288 (GCM), RFC 7905 (ChaCha20).

Round trips, and above all rejection: any damage to a record (a flipped bit, truncation, a
replay, the wrong keys, bad CBC padding under a valid MAC) must raise the same BadRecordMac,
with the same message, and consume no sequence number (§6.2.3.2, against padding oracles).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdf_lib.errors import BadRecordMac, RecordOverflow, SequenceExhausted
from kdf_lib.record import (
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    ContentType,
    RecordProtection,
    connection_record_layers,
)
from kdf_lib.suites import SUITES, BulkCipher, CipherSuite, KeyMaterial, split_key_block

FIXED_MESSAGE = str(BadRecordMac())
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_MAC_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384}


@dataclass(frozen=True)
class Config:
    suite: CipherSuite
    encrypt_then_mac: bool

    @property
    def id(self) -> str:
        return self.suite.name + ("+etm" if self.encrypt_then_mac else "")


CONFIGS = [
    Config(suite, etm)
    for suite in SUITES.values()
    for etm in ((False,) if suite.is_aead else (False, True))
]
CBC_CONFIGS = [c for c in CONFIGS if not c.suite.is_aead]
MTE_CONFIGS = [c for c in CBC_CONFIGS if not c.encrypt_then_mac]
ETM_CONFIGS = [c for c in CBC_CONFIGS if c.encrypt_then_mac]
AEAD_CONFIGS = [c for c in CONFIGS if c.suite.is_aead]


def configs(chosen: list[Config]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("config", [pytest.param(c, id=c.id) for c in chosen])


def key_material(suite: CipherSuite, seed: int = 0) -> KeyMaterial:
    block = random.Random(f"{suite.name}/{seed}").randbytes(suite.key_block_length)
    return split_key_block(suite, block)


def pair(config: Config, seed: int = 0) -> tuple[RecordProtection, RecordProtection]:
    """(client write layer, server read layer): one direction of one connection."""
    keys = key_material(config.suite, seed)
    writer, _ = connection_record_layers(keys, "client", encrypt_then_mac=config.encrypt_then_mac)
    _, reader = connection_record_layers(keys, "server", encrypt_then_mac=config.encrypt_then_mac)
    return writer, reader


def assert_bad_record_mac(reader: RecordProtection, action: Callable[[], object]) -> None:
    """``action`` fails with exactly BadRecordMac: fixed message, no chained detail, no seq used."""
    seq = reader.seq
    with pytest.raises(BadRecordMac) as info:
        action()
    error = info.value
    assert type(error) is BadRecordMac
    assert str(error) == FIXED_MESSAGE
    assert error.to_dict() == {"code": "bad_record_mac", "message": FIXED_MESSAGE}
    # A chained InvalidTag/padding exception would tell the failures apart in a traceback.
    assert error.__cause__ is None
    assert error.__context__ is None
    assert reader.seq == seq


def pseudo_random_bytes(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


content_types = st.sampled_from(list(ContentType))
#: Mostly short, sometimes up to the 2^14-byte maximum fragment (§6.2.1).
plaintexts = st.one_of(
    st.binary(max_size=300),
    st.builds(pseudo_random_bytes, st.integers(0, MAX_PLAINTEXT), st.integers(0, 2**32)),
    st.builds(
        pseudo_random_bytes, st.integers(MAX_PLAINTEXT - 64, MAX_PLAINTEXT), st.integers(0, 2**32)
    ),
)


def expected_fragment_length(config: Config, plaintext_length: int) -> int:
    suite = config.suite
    if suite.is_aead:
        return suite.record_iv_length + plaintext_length + suite.tag_length
    if config.encrypt_then_mac:
        padded = (plaintext_length // 16 + 1) * 16
        return suite.record_iv_length + padded + suite.mac_length
    return suite.record_iv_length + ((plaintext_length + suite.mac_length) // 16 + 1) * 16


# -- round trips -----------------------------------------------------------------------------------


def _deterministic_pair(config: Config) -> tuple[RecordProtection, RecordProtection]:
    """A pair whose CBC IVs come from a seeded generator, so two runs give the same bytes."""
    writer, reader = pair(config)
    writer.random_bytes = random.Random(7).randbytes
    return writer, reader


def _keyed_objects(layer: RecordProtection) -> list[object]:
    return [layer._aead, layer._hmac, layer._aes]


@configs(CONFIGS)
def test_release_changes_no_byte_and_no_sequence_number(config: Config) -> None:
    # release() drops the keyed cipher and MAC objects (OpenSSL state, kilobytes each) between
    # bursts of records; the records before and after must be exactly those of a layer that
    # never released anything, and the sequence numbers must run on.
    kept_writer, kept_reader = _deterministic_pair(config)
    writer, reader = _deterministic_pair(config)
    messages = [b"first", b"x" * 1000, b"", b"after release" * 50]
    for index, plaintext in enumerate(messages):
        record = writer.seal(ContentType.application_data, plaintext)
        assert record == kept_writer.seal(ContentType.application_data, plaintext)
        assert reader.open(record) == (ContentType.application_data, plaintext)
        assert kept_reader.open(record) == (ContentType.application_data, plaintext)
        assert any(o is not None for o in _keyed_objects(writer) + _keyed_objects(reader))
        writer.release()
        reader.release()
        assert _keyed_objects(writer) == _keyed_objects(reader) == [None, None, None]
        assert writer.seq == reader.seq == index + 1
    # A released reader still refuses what it must.
    record = bytearray(writer.seal(ContentType.application_data, b"tampered"))
    record[-1] ^= 1
    reader.release()
    assert_bad_record_mac(reader, lambda: reader.open(bytes(record)))


@configs(CONFIGS)
@PROPERTY
@given(
    messages=st.lists(st.tuples(content_types, plaintexts), min_size=1, max_size=3),
    key_seed=st.integers(0, 2**32),
)
def test_seal_then_open_round_trips(
    config: Config, messages: list[tuple[ContentType, bytes]], key_seed: int
) -> None:
    writer, reader = pair(config, seed=key_seed)
    for seq, (content_type, plaintext) in enumerate(messages):
        record = writer.seal(content_type, plaintext)
        # Header: type, version 3.3, length (§6.2.1); minimal padding (§6.2.3.2).
        fragment_length = expected_fragment_length(config, len(plaintext))
        assert record[:5] == bytes((content_type,)) + b"\x03\x03" + struct.pack(
            ">H", fragment_length
        )
        assert len(record) == 5 + fragment_length
        assert reader.open(record) == (content_type, plaintext)
        assert writer.seq == reader.seq == seq + 1


@configs(CONFIGS)
@PROPERTY
@given(
    messages=st.lists(st.tuples(content_types, st.binary(max_size=2000)), min_size=1, max_size=5)
)
def test_open_many_opens_back_to_back_records(
    config: Config, messages: list[tuple[ContentType, bytes]]
) -> None:
    writer, reader = pair(config)
    wire = b"".join(writer.seal(content_type, plaintext) for content_type, plaintext in messages)
    assert reader.open_many(wire) == messages
    assert reader.seq == len(messages)


@configs(CONFIGS)
def test_largest_fragment_seals_and_one_byte_more_overflows(config: Config) -> None:
    writer, reader = pair(config)
    assert reader.open(writer.seal(ContentType.application_data, bytes(MAX_PLAINTEXT)))[1] == bytes(
        MAX_PLAINTEXT
    )
    with pytest.raises(RecordOverflow):
        writer.seal(ContentType.application_data, bytes(MAX_PLAINTEXT + 1))
    assert writer.seq == 1  # the refused fragment consumed no sequence number


@configs(CBC_CONFIGS)
def test_cbc_explicit_iv_is_fresh_per_record(config: Config) -> None:
    writer, _ = pair(config)
    records = [writer.seal(ContentType.application_data, b"same plaintext") for _ in range(3)]
    ivs = {record[5:21] for record in records}
    assert len(ivs) == 3  # §6.2.3.2: the IV SHOULD be chosen at random, per record


# -- every single-bit flip is rejected -------------------------------------------------------------


@configs(CONFIGS)
def test_every_single_bit_flip_of_a_short_record_is_rejected(config: Config) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, b"ping")
    for bit in range(len(record) * 8):
        damaged = bytearray(record)
        damaged[bit // 8] ^= 1 << (bit % 8)
        assert_bad_record_mac(reader, lambda d=bytes(damaged): reader.open(d))
    assert reader.open(record) == (ContentType.application_data, b"ping")


@configs(CONFIGS)
@PROPERTY
@given(content_type=content_types, plaintext=plaintexts, data=st.data())
def test_any_single_bit_flip_is_rejected(
    config: Config, content_type: ContentType, plaintext: bytes, data: st.DataObject
) -> None:
    writer, reader = pair(config)
    record = writer.seal(content_type, plaintext)
    # Header bits get extra weight: they are few and each is handled by a different check.
    bit = data.draw(st.one_of(st.integers(0, 39), st.integers(0, len(record) * 8 - 1)), label="bit")
    damaged = bytearray(record)
    damaged[bit // 8] ^= 1 << (bit % 8)
    assert_bad_record_mac(reader, lambda: reader.open(bytes(damaged)))
    assert reader.open(record) == (content_type, plaintext)


@configs(CONFIGS[:1])
def test_seal_refuses_a_content_type_that_open_would_reject(config: Config) -> None:
    writer, _ = pair(config)
    try:
        writer.seal(99, b"x")
    except ValueError:
        assert writer.seq == 0
        return
    raise AssertionError("seal(99, ...) produced a record no peer can open")


# -- truncation, extension, replay, reordering, wrong keys -----------------------------------------


@configs(CONFIGS)
def test_record_truncated_by_any_number_of_bytes_is_rejected(config: Config) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, b"a short message")
    for cut in range(1, len(record)):
        assert_bad_record_mac(reader, lambda c=cut: reader.open(record[:-c]))
    assert reader.open(record)[1] == b"a short message"


@configs(CONFIGS[:1])
def test_record_truncated_to_nothing_is_rejected_like_any_truncation(config: Config) -> None:
    writer, reader = pair(config)
    writer.seal(ContentType.application_data, b"a short message")
    try:
        reader.open(b"")
    except BadRecordMac:
        return
    except Exception as exc:  # which class it is, is the point
        raise AssertionError(f"{type(exc).__name__}: {exc}") from None
    raise AssertionError("an empty record was accepted")


@configs(CONFIGS)
@PROPERTY
@given(plaintext=plaintexts, cut=st.integers(1, 2**15))
def test_truncated_records_are_rejected(config: Config, plaintext: bytes, cut: int) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, plaintext)
    cut = 1 + cut % (len(record) - 1)
    assert_bad_record_mac(reader, lambda: reader.open(record[:-cut]))


@configs(CONFIGS)
@PROPERTY
@given(extra=st.binary(min_size=1, max_size=40))
def test_trailing_bytes_after_a_record_are_rejected(config: Config, extra: bytes) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, b"payload")
    assert_bad_record_mac(reader, lambda: reader.open(record + extra))
    # Two complete records are not "one record" either.
    assert_bad_record_mac(reader, lambda: reader.open(record + record))


@configs(CONFIGS)
def test_replayed_record_is_rejected(config: Config) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, b"pay 100")
    assert reader.open(record)[1] == b"pay 100"
    assert_bad_record_mac(reader, lambda: reader.open(record))
    assert reader.seq == 1


@configs(CONFIGS)
def test_records_opened_out_of_order_are_rejected(config: Config) -> None:
    writer, reader = pair(config)
    first = writer.seal(ContentType.application_data, b"first")
    second = writer.seal(ContentType.application_data, b"second")
    assert_bad_record_mac(reader, lambda: reader.open(second))
    assert reader.open(first)[1] == b"first"
    assert reader.open(second)[1] == b"second"


@configs(CONFIGS)
def test_dropped_record_makes_the_next_one_fail(config: Config) -> None:
    writer, reader = pair(config)
    writer.seal(ContentType.application_data, b"lost in transit")
    following = writer.seal(ContentType.application_data, b"next")
    assert_bad_record_mac(reader, lambda: reader.open(following))


@configs(CONFIGS)
def test_record_opened_with_the_other_directions_keys_is_rejected(config: Config) -> None:
    keys = key_material(config.suite)
    etm = config.encrypt_then_mac
    client_write, client_read = connection_record_layers(keys, "client", encrypt_then_mac=etm)
    server_write, server_read = connection_record_layers(keys, "server", encrypt_then_mac=etm)
    from_client = client_write.seal(ContentType.application_data, b"hello server")
    from_server = server_write.seal(ContentType.application_data, b"hello client")
    # A reflected record: each side's read layer must refuse its own side's output.
    assert_bad_record_mac(client_read, lambda: client_read.open(from_client))
    assert_bad_record_mac(server_read, lambda: server_read.open(from_server))
    assert server_read.open(from_client)[1] == b"hello server"
    assert client_read.open(from_server)[1] == b"hello client"


@configs(CONFIGS)
def test_record_from_another_connection_is_rejected(config: Config) -> None:
    writer, _ = pair(config, seed=1)
    _, reader = pair(config, seed=2)
    assert_bad_record_mac(reader, lambda: reader.open(writer.seal(ContentType.handshake, b"\x14")))


@configs(CONFIGS)
def test_changed_content_type_is_rejected(config: Config) -> None:
    # The type is authenticated (MAC header / AEAD additional data), so relabelling fails.
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, b"\x01\x00")
    for other in ContentType:
        if other is not ContentType.application_data:
            relabelled = bytes((other,)) + record[1:]
            assert_bad_record_mac(reader, lambda r=relabelled: reader.open(r))


@configs(CBC_CONFIGS)
def test_cbc_record_read_with_the_other_mac_order_is_rejected(config: Config) -> None:
    keys = key_material(config.suite)
    writer, _ = connection_record_layers(keys, "client", encrypt_then_mac=config.encrypt_then_mac)
    _, reader = connection_record_layers(
        keys, "server", encrypt_then_mac=not config.encrypt_then_mac
    )
    record = writer.seal(ContentType.application_data, b"which order?")
    assert_bad_record_mac(reader, lambda: reader.open(record))


# -- open_many is all or nothing -------------------------------------------------------------------


@configs(CONFIGS)
@PROPERTY
@given(bit=st.integers(0, 2**20), count=st.integers(1, 3))
def test_open_many_with_a_damaged_record_consumes_no_sequence_number(
    config: Config, bit: int, count: int
) -> None:
    writer, reader = pair(config)
    good = [writer.seal(ContentType.application_data, b"record %d" % i) for i in range(count)]
    last = writer.seal(ContentType.application_data, b"damaged")
    damaged = bytearray(last)
    # Leave the header alone so framing succeeds and the good records are really opened first.
    index = 5 + (bit // 8) % (len(last) - 5)
    damaged[index] ^= 1 << (bit % 8)
    assert_bad_record_mac(reader, lambda: reader.open_many(b"".join(good) + bytes(damaged)))
    assert reader.seq == 0
    # Nothing was consumed: the good records still open, in order, from sequence 0.
    assert reader.open_many(b"".join(good) + last)[-1] == (ContentType.application_data, b"damaged")
    assert reader.seq == count + 1


@configs(CONFIGS)
def test_open_many_with_a_truncated_tail_consumes_no_sequence_number(config: Config) -> None:
    writer, reader = pair(config)
    first = writer.seal(ContentType.application_data, b"one")
    second = writer.seal(ContentType.application_data, b"two")
    assert_bad_record_mac(reader, lambda: reader.open_many(first + second[:-1]))
    assert reader.seq == 0
    assert [p for _, p in reader.open_many(first + second)] == [b"one", b"two"]


# -- hand-built CBC records: valid MAC, bad padding or length --------------------------------------


def _hmac(config: Config, key: bytes, data: bytes) -> bytes:
    assert config.suite.mac_name is not None
    h = hmac.HMAC(key, _MAC_HASHES[config.suite.mac_name]())
    h.update(data)
    return h.finalize()


def _mac_header(seq: int, content_type: int, length: int) -> bytes:
    return struct.pack(">QB", seq, content_type) + b"\x03\x03" + struct.pack(">H", length)


def _aes_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _record(content_type: int, fragment: bytes) -> bytes:
    return bytes((content_type,)) + b"\x03\x03" + struct.pack(">H", len(fragment)) + fragment


def mte_record(config: Config, plaintext: bytes, padding: bytes, seq: int = 0) -> bytes:
    """RFC 5246 §6.2.3.2 by hand: IV + E(plaintext + MAC(plaintext) + padding)."""
    keys = key_material(config.suite)
    content_type = ContentType.application_data
    mac = _hmac(
        config,
        keys.client_write_mac_key,
        _mac_header(seq, content_type, len(plaintext)) + plaintext,
    )
    iv = bytes(range(16))
    return _record(
        content_type, iv + _aes_cbc(keys.client_write_key, iv, plaintext + mac + padding)
    )


def etm_record(
    config: Config, plaintext: bytes, padding: bytes, seq: int = 0, cut: int = 0
) -> bytes:
    """RFC 7366 §3 by hand: IV + E(plaintext + padding), then MAC over it; ``cut`` drops
    ciphertext bytes *before* the MAC is computed, so the MAC stays valid."""
    keys = key_material(config.suite)
    content_type = ContentType.application_data
    iv = bytes(range(16))
    body = iv + _aes_cbc(keys.client_write_key, iv, plaintext + padding)
    body = body[: len(body) - cut]
    mac = _hmac(config, keys.client_write_mac_key, _mac_header(seq, content_type, len(body)) + body)
    return _record(content_type, body + mac)


def good_padding(length: int) -> bytes:
    return bytes((length,)) * (length + 1)


def _pad_to_block(used: int, extra_blocks: int = 0) -> int:
    """The padding_length that makes ``used`` + padding fill whole blocks."""
    return (15 - used % 16) % 16 + 16 * extra_blocks


def bad_paddings(used: int) -> dict[str, bytes]:
    """Paddings that fill whole blocks but are not TLS padding, for ``used`` bytes before them."""
    minimal = _pad_to_block(used)
    longer = _pad_to_block(used, 2)
    return {
        # SSLv3 allowed arbitrary filler (POODLE); TLS wants every byte equal to the length.
        "sslv3-filler": bytes(range(0xA0, 0xA0 + longer)) + bytes((longer,)),
        "one-byte-off": bytes((longer ^ 1,)) + bytes((longer,)) * longer,
        "middle-byte-off": bytes((longer,)) * (longer // 2)
        + bytes((longer ^ 0x80,))
        + bytes((longer,)) * (longer - longer // 2),
        "length-beyond-record": bytes((0xFF,)) * (minimal + 1),
        "length-one-block-too-long": bytes((minimal + 16,)) * (minimal + 1),
    }


@configs(MTE_CONFIGS)
def test_hand_built_mac_then_encrypt_record_with_good_padding_opens(config: Config) -> None:
    # Control: proves the hand-built records below have kdf_lib's exact layout.
    _, reader = pair(config)
    plaintext = b"valid MAC, valid padding"
    used = len(plaintext) + config.suite.mac_length
    for extra_blocks in (0, 1, 5):
        reader.seq = 0
        record = mte_record(config, plaintext, good_padding(_pad_to_block(used, extra_blocks)))
        assert reader.open(record) == (ContentType.application_data, plaintext)


@configs(MTE_CONFIGS)
@pytest.mark.parametrize("kind", sorted(bad_paddings(0)))
def test_mac_then_encrypt_valid_mac_with_bad_padding_is_rejected(config: Config, kind: str) -> None:
    _, reader = pair(config)
    plaintext = b"valid MAC, bad padding"
    padding = bad_paddings(len(plaintext) + config.suite.mac_length)[kind]
    assert_bad_record_mac(reader, lambda: reader.open(mte_record(config, plaintext, padding)))


@configs(MTE_CONFIGS)
def test_mac_then_encrypt_largest_legal_padding_opens(config: Config) -> None:
    # §6.2.3.2: padding_length may be anything up to 255 that fills whole blocks.
    _, reader = pair(config)
    mac_length = config.suite.mac_length
    for plaintext_length in range(16):
        used = plaintext_length + mac_length
        largest = max(p for p in range(256) if (used + p + 1) % 16 == 0)
        reader.seq = 0
        record = mte_record(config, bytes(plaintext_length), good_padding(largest))
        assert reader.open(record)[1] == bytes(plaintext_length)


@configs(ETM_CONFIGS)
def test_hand_built_encrypt_then_mac_record_with_good_padding_opens(config: Config) -> None:
    _, reader = pair(config)
    plaintext = b"valid MAC, valid padding"
    for extra_blocks in (0, 1, 5):
        reader.seq = 0
        record = etm_record(
            config, plaintext, good_padding(_pad_to_block(len(plaintext), extra_blocks))
        )
        assert reader.open(record) == (ContentType.application_data, plaintext)


@configs(ETM_CONFIGS)
@pytest.mark.parametrize("kind", sorted(bad_paddings(0)))
def test_encrypt_then_mac_valid_mac_with_bad_padding_is_rejected(config: Config, kind: str) -> None:
    # With RFC 7366 the MAC covers the ciphertext, so a valid MAC over bad padding is easy to
    # make for anyone holding the keys; the padding check must still hold.
    _, reader = pair(config)
    plaintext = b"valid MAC, bad padding"
    padding = bad_paddings(len(plaintext))[kind]
    assert_bad_record_mac(reader, lambda: reader.open(etm_record(config, plaintext, padding)))


@configs(ETM_CONFIGS)
@pytest.mark.parametrize("cut", [1, 7, 15, 17, 31])
def test_encrypt_then_mac_ciphertext_not_whole_blocks_is_rejected(config: Config, cut: int) -> None:
    _, reader = pair(config)
    plaintext = bytes(40)
    record = etm_record(config, plaintext, good_padding(_pad_to_block(len(plaintext))), cut=cut)
    assert_bad_record_mac(reader, lambda: reader.open(record))


@configs(ETM_CONFIGS)
def test_encrypt_then_mac_iv_only_record_is_rejected(config: Config) -> None:
    _, reader = pair(config)
    record = etm_record(config, b"", good_padding(15), cut=16)  # IV, no ciphertext, valid MAC
    assert_bad_record_mac(reader, lambda: reader.open(record))


@configs(MTE_CONFIGS)
@pytest.mark.parametrize("delta", [-15, -8, -1, 1, 8, 15])
def test_mac_then_encrypt_ciphertext_not_whole_blocks_is_rejected(
    config: Config, delta: int
) -> None:
    writer, reader = pair(config)
    record = writer.seal(ContentType.application_data, bytes(50))
    fragment = record[5:]
    fragment = fragment[:delta] if delta < 0 else fragment + bytes(delta)
    assert_bad_record_mac(
        reader, lambda: reader.open(_record(ContentType.application_data, fragment))
    )


@configs(CBC_CONFIGS)
def test_short_cbc_fragments_are_rejected(config: Config) -> None:
    _, reader = pair(config)
    for length in range(0, 16 + 16 + config.suite.mac_length):
        fragment = bytes(length)
        assert_bad_record_mac(reader, lambda f=fragment: reader.open(_record(ContentType.alert, f)))


@configs(AEAD_CONFIGS)
def test_aead_record_shorter_than_nonce_plus_tag_is_rejected(config: Config) -> None:
    _, reader = pair(config)
    for length in range(config.suite.record_iv_length + config.suite.tag_length):
        fragment = bytes(length)
        assert_bad_record_mac(reader, lambda f=fragment: reader.open(_record(ContentType.alert, f)))


# -- oversize --------------------------------------------------------------------------------------


@configs(CONFIGS)
def test_record_longer_than_the_ciphertext_limit_overflows(config: Config) -> None:
    _, reader = pair(config)
    with pytest.raises(RecordOverflow):
        reader.open(_record(ContentType.application_data, bytes(MAX_CIPHERTEXT + 1)))
    assert reader.seq == 0


def _aead_record(config: Config, plaintext: bytes, seq: int = 0) -> bytes:
    keys = key_material(config.suite)
    content_type = ContentType.application_data
    aad = _mac_header(seq, content_type, len(plaintext))
    if config.suite.bulk_cipher is BulkCipher.AES_GCM:
        explicit = struct.pack(">Q", seq)
        sealed = AESGCM(keys.client_write_key).encrypt(
            keys.client_write_iv + explicit, plaintext, aad
        )
        return _record(content_type, explicit + sealed)
    nonce = bytes(
        a ^ b for a, b in zip(keys.client_write_iv, bytes(4) + struct.pack(">Q", seq), strict=True)
    )
    return _record(
        content_type, ChaCha20Poly1305(keys.client_write_key).encrypt(nonce, plaintext, aad)
    )


@configs(AEAD_CONFIGS)
def test_authentic_aead_record_with_oversize_plaintext_overflows(config: Config) -> None:
    _, reader = pair(config)
    assert (
        reader.open(_aead_record(config, b"control"))[1] == b"control"
    )  # hand-built layout is right
    reader.seq = 0
    with pytest.raises(RecordOverflow):
        reader.open(_aead_record(config, bytes(MAX_PLAINTEXT + 1)))
    assert reader.seq == 0


@configs(CBC_CONFIGS)
def test_authentic_cbc_record_with_oversize_plaintext_overflows(config: Config) -> None:
    _, reader = pair(config)
    plaintext = bytes(MAX_PLAINTEXT + 1)
    if config.encrypt_then_mac:
        record = etm_record(config, plaintext, good_padding(_pad_to_block(len(plaintext))))
    else:
        used = len(plaintext) + config.suite.mac_length
        record = mte_record(config, plaintext, good_padding(_pad_to_block(used)))
    with pytest.raises(RecordOverflow):
        reader.open(record)
    assert reader.seq == 0


# -- sequence numbers ------------------------------------------------------------------------------


@configs(CONFIGS)
def test_sequence_number_never_wraps(config: Config) -> None:
    writer, reader = pair(config)
    writer.seq = reader.seq = 2**64 - 1
    assert reader.open(writer.seal(ContentType.application_data, b"last"))[1] == b"last"
    # §6.1: a sequence number must not wrap; the connection needs a new handshake.
    with pytest.raises(SequenceExhausted):
        writer.seal(ContentType.application_data, b"one too many")
    with pytest.raises(SequenceExhausted):
        reader.open(b"\x17\x03\x03\x00\x00")


# -- nothing secret in repr ------------------------------------------------------------------------


def _secret_fragments(secret: bytes) -> list[str]:
    """Every 4-byte window of ``secret`` as lowercase hex, uppercase hex and bytes repr."""
    fragments = []
    for start in range(0, max(len(secret) - 3, 0)):
        window = secret[start : start + 4]
        fragments += [window.hex(), window.hex().upper(), repr(window)[2:-1]]
    return fragments


@pytest.mark.parametrize("suite", list(SUITES.values()), ids=list(SUITES))
def test_repr_of_keys_and_record_layers_shows_no_key_bytes(suite: CipherSuite) -> None:
    keys = key_material(suite, seed=7)
    secrets_ = [
        keys.client_write_mac_key,
        keys.server_write_mac_key,
        keys.client_write_key,
        keys.server_write_key,
        keys.client_write_iv,
        keys.server_write_iv,
    ]
    write, read = connection_record_layers(keys, "client", encrypt_then_mac=True)
    for shown in (repr(keys), str(keys), repr(write), str(read), repr([keys, write, read])):
        for secret in secrets_:
            for fragment in _secret_fragments(secret):
                assert fragment not in shown, f"{fragment!r} of a key appears in {shown!r}"
    assert suite.name in repr(keys)
