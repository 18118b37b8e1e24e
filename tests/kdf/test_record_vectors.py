"""Published TLS 1.2 records (tests/vectors/records.json) through kdf_lib's record layer.

For each connection: the key block splits into the published keys (RFC 5246 §6.3), every
published record opens at its sequence number (§6.2.3, RFC 5288), and sealing the same
plaintext with the same explicit IV gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import kdf_lib
from kdf_lib.errors import BadRecordMac
from kdf_lib.record import ContentType, RecordProtection, connection_record_layers
from kdf_lib.suites import KeyMaterial, get_suite, key_block_layout, split_key_block

from .vectors import load, params, unhex

RECORD_CASES = load("records")
RFC_KEY_ORDER = (
    "client_write_mac_key",
    "server_write_mac_key",
    "client_write_key",
    "server_write_key",
    "client_write_iv",
    "server_write_iv",
)


def _writer(record: dict[str, Any]) -> str:
    return {"client->server": "client", "server->client": "server"}[record["direction"]]


def _reader(record: dict[str, Any]) -> str:
    return {"client": "server", "server": "client"}[_writer(record)]


def _keys(case: dict[str, Any]) -> KeyMaterial:
    return split_key_block(get_suite(case["cipher_suite"]), unhex(case["key_block"]))


def _record_params() -> list[Any]:
    return [
        pytest.param(case, record, id=f"{case['id']}/{_writer(record)}-seq{record['seq_num']}")
        for case in RECORD_CASES
        for record in case["records"]
    ]


def _explicit_iv_source(explicit_iv: bytes) -> Callable[[int], bytes]:
    """A ``random_bytes`` that hands out the published explicit IV, once."""
    handed_out = []

    def random_bytes(length: int) -> bytes:
        assert length == len(explicit_iv), "the record layer asked for an IV of the wrong size"
        assert not handed_out, "one record needs one explicit IV"
        handed_out.append(length)
        return explicit_iv

    return random_bytes


def _no_randomness(length: int) -> bytes:
    raise AssertionError("AEAD records must not draw randomness")


def _minimal_cbc_padding_length(suite_mac_length: int, plaintext_length: int) -> int:
    return (16 - (plaintext_length + suite_mac_length + 1) % 16) % 16


def _reproducible_by_sealing(case: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether kdf_lib's sealing choices match the record's (minimal padding; GCM nonce = seq)."""
    suite = get_suite(case["cipher_suite"])
    if suite.is_aead:
        # ChaCha20-Poly1305 has no explicit nonce; kdf_lib's GCM explicit nonce is seq_num.
        seq_bytes = record["seq_num"].to_bytes(8, "big")
        return "explicit_nonce" not in record or unhex(record["explicit_nonce"]) == seq_bytes
    minimal = _minimal_cbc_padding_length(suite.mac_length, record["plaintext_len"])
    return bool(record["padding_length"] == minimal)


@pytest.mark.parametrize("case", params(RECORD_CASES))
def test_published_records_are_mac_then_encrypt_or_aead(case: dict[str, Any]) -> None:
    # The readers here use connection_record_layers' default (no RFC 7366); ETM is tested
    # against OpenSSL and in the property tests.
    protection = case["record_protection"]
    assert protection.startswith(("AES-CBC, MAC-then-encrypt", "AES-GCM AEAD")), protection


# -- derivation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", params(RECORD_CASES))
def test_suite_table_matches_the_connection(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    assert suite.code == int(case["cipher_suite_id"], 16)
    assert suite.prf_hash == case["prf_hash"]
    assert suite.mac_key_length == case["mac_key_len"]
    assert suite.enc_key_length == case["enc_key_len"]
    assert suite.fixed_iv_length == case["fixed_iv_len"]
    assert suite.key_block_length == case["key_block_length"]
    assert (f"hmac-{suite.mac_name}" if suite.mac_name else None) == case["mac_algorithm"]


@pytest.mark.parametrize("case", params(RECORD_CASES))
def test_master_secret_and_key_block_of_the_connection(case: dict[str, Any]) -> None:
    hash_name = case["prf_hash"]
    pms = unhex(case["pre_master_secret"])
    if case["extended_master_secret"]:
        master = kdf_lib.extended_master_secret(pms, unhex(case["session_hash"]), hash_name)
    else:
        master = kdf_lib.master_secret(
            pms, unhex(case["client_random"]), unhex(case["server_random"]), hash_name
        )
    assert master == unhex(case["master_secret"])
    block = kdf_lib.key_block(
        master,
        unhex(case["client_random"]),
        unhex(case["server_random"]),
        case["key_block_length"],
        hash_name,
    )
    assert block == unhex(case["key_block"])


@pytest.mark.parametrize("case", params(RECORD_CASES))
def test_split_key_block_gives_the_published_keys_in_rfc_order(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    keys = _keys(case)
    for name in RFC_KEY_ORDER:
        assert getattr(keys, name) == unhex(case["keys"][name]), name
    assert [part.name for part in key_block_layout(suite)] == list(RFC_KEY_ORDER)
    # RFC 5246 §6.3: the six values are consecutive, in that order, from the start of the block.
    concatenated = b"".join(unhex(case["keys"][name]) for name in RFC_KEY_ORDER)
    assert concatenated == unhex(case["key_block"])[: suite.key_block_length]


# -- opening ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "record"), _record_params())
def test_published_record_opens_at_its_sequence_number(
    case: dict[str, Any], record: dict[str, Any]
) -> None:
    _, reader = connection_record_layers(_keys(case), _reader(record))
    reader.seq = record["seq_num"]
    content_type, plaintext = reader.open(unhex(record["record"]))
    assert content_type is ContentType(record["content_type"])
    assert plaintext == unhex(record["plaintext"])
    assert reader.seq == record["seq_num"] + 1


@pytest.mark.parametrize(("case", "record"), _record_params())
def test_published_record_at_another_sequence_number_is_rejected(
    case: dict[str, Any], record: dict[str, Any]
) -> None:
    _, reader = connection_record_layers(_keys(case), _reader(record))
    for seq in (record["seq_num"] + 1, record["seq_num"] + 2**32):
        reader.seq = seq
        with pytest.raises(BadRecordMac):
            reader.open(unhex(record["record"]))
        assert reader.seq == seq


@pytest.mark.parametrize(("case", "record"), _record_params())
def test_published_record_is_rejected_by_the_writers_own_read_keys(
    case: dict[str, Any], record: dict[str, Any]
) -> None:
    # The writer's read layer holds the other direction's keys (RFC 5246 §6.3: one set per side).
    _, wrong_reader = connection_record_layers(_keys(case), _writer(record))
    wrong_reader.seq = record["seq_num"]
    with pytest.raises(BadRecordMac):
        wrong_reader.open(unhex(record["record"]))


def _direction_params() -> list[Any]:
    return [
        pytest.param(case, direction, id=f"{case['id']}/{direction}")
        for case in RECORD_CASES
        for direction in ("client->server", "server->client")
    ]


@pytest.mark.parametrize(("case", "direction"), _direction_params())
def test_one_direction_opens_in_order_from_sequence_zero(
    case: dict[str, Any], direction: str
) -> None:
    records = sorted(
        (r for r in case["records"] if r["direction"] == direction), key=lambda r: r["seq_num"]
    )
    assert [r["seq_num"] for r in records] == list(range(len(records)))
    _, reader = connection_record_layers(_keys(case), _reader(records[0]))
    opened = reader.open_many(b"".join(unhex(r["record"]) for r in records))
    assert opened == [(ContentType(r["content_type"]), unhex(r["plaintext"])) for r in records]
    assert reader.seq == len(records)


def test_illustrated_connection_is_mac_then_encrypt_with_hmac_sha1() -> None:
    case = next(c for c in RECORD_CASES if c["id"] == "illustrated-tls12")
    keys = _keys(case)
    assert keys.suite.mac_name == "sha1"
    assert keys.suite.mac_length == 20
    record = case["records"][0]
    _, mte_reader = connection_record_layers(keys, "server")
    assert mte_reader.open(unhex(record["record"]))[1] == unhex(record["plaintext"])
    # The same bytes read as RFC 7366 encrypt-then-MAC must fail: the MAC sits elsewhere.
    _, etm_reader = connection_record_layers(keys, "server", encrypt_then_mac=True)
    with pytest.raises(BadRecordMac):
        etm_reader.open(unhex(record["record"]))


def test_record_with_non_minimal_cbc_padding_opens() -> None:
    checked = 0
    for case in RECORD_CASES:
        suite = get_suite(case["cipher_suite"])
        for record in case["records"]:
            if suite.is_aead:
                continue
            minimal = _minimal_cbc_padding_length(suite.mac_length, record["plaintext_len"])
            if record["padding_length"] == minimal:
                continue
            # RFC 5246 §6.2.3.2: any padding length up to 255 that fills whole blocks is legal.
            assert record["padding_length"] > 16
            _, reader = connection_record_layers(_keys(case), _reader(record))
            reader.seq = record["seq_num"]
            assert reader.open(unhex(record["record"]))[1] == unhex(record["plaintext"])
            checked += 1
    assert checked == 2  # the 300-byte server records of the two generated CBC connections


def test_gcm_explicit_nonce_is_read_from_the_record_not_derived_from_seq() -> None:
    checked = 0
    for case in RECORD_CASES:
        if not get_suite(case["cipher_suite"]).is_aead:
            continue
        for record in case["records"]:
            explicit = unhex(record["explicit_nonce"])
            if explicit == record["seq_num"].to_bytes(8, "big"):
                continue
            _, reader = connection_record_layers(_keys(case), _reader(record))
            reader.seq = record["seq_num"]
            assert reader.open(unhex(record["record"])) == (
                ContentType(record["content_type"]),
                unhex(record["plaintext"]),
            )
            checked += 1
    assert checked >= 2


# -- sealing ---------------------------------------------------------------------------------------

_SEALABLE = [
    pytest.param(case, record, id=f"{case['id']}/{_writer(record)}-seq{record['seq_num']}")
    for case in RECORD_CASES
    for record in case["records"]
    if _reproducible_by_sealing(case, record)
]


@pytest.mark.parametrize(("case", "record"), _SEALABLE)
def test_sealing_reproduces_the_published_record(
    case: dict[str, Any], record: dict[str, Any]
) -> None:
    suite = get_suite(case["cipher_suite"])
    # CBC: the published explicit IV comes in through random_bytes. AEAD: kdf_lib must not draw
    # randomness at all, because its explicit nonce is the sequence number (RFC 5288 §3).
    random_bytes = (
        _no_randomness if suite.is_aead else _explicit_iv_source(unhex(record["explicit_iv"]))
    )
    writer, _ = connection_record_layers(_keys(case), _writer(record), random_bytes=random_bytes)
    writer.seq = record["seq_num"]
    sealed = writer.seal(ContentType(record["content_type"]), unhex(record["plaintext"]))
    assert sealed.hex() == record["record"]
    assert writer.seq == record["seq_num"] + 1


def test_only_the_known_records_cannot_be_reproduced_by_sealing() -> None:
    # The filter above must not quietly skip records: name every one it leaves out.
    skipped = {
        (case["id"], _writer(record), record["seq_num"])
        for case in RECORD_CASES
        for record in case["records"]
        if not _reproducible_by_sealing(case, record)
    }
    assert skipped == {
        # non-minimal CBC padding (padding_length = minimal + 48)
        ("gen-aes128-cbc-sha256", "server", 1),
        ("gen-aes256-cbc-sha256", "server", 1),
        # explicit nonce a1b2c3d4e5f60718 at seq 2, and then 0000000000000002 at seq 3
        ("gen-aes128-gcm-sha256", "client", 2),
        ("gen-aes128-gcm-sha256", "client", 3),
        ("gen-aes256-gcm-sha384-ems", "client", 2),
        ("gen-aes256-gcm-sha384-ems", "client", 3),
    }


@pytest.mark.parametrize(("case", "record"), _record_params())
def test_record_sealed_by_kdf_lib_opens_like_the_published_one(
    case: dict[str, Any], record: dict[str, Any]
) -> None:
    # Covers the records the byte-for-byte test cannot: same keys, seq, type and plaintext.
    keys = _keys(case)
    writer, _ = connection_record_layers(keys, _writer(record))
    _, reader = connection_record_layers(keys, _reader(record))
    writer.seq = reader.seq = record["seq_num"]
    sealed = writer.seal(ContentType(record["content_type"]), unhex(record["plaintext"]))
    assert reader.open(sealed) == (ContentType(record["content_type"]), unhex(record["plaintext"]))


def test_record_protection_can_be_built_directly_from_published_keys() -> None:
    case = RECORD_CASES[0]
    record = case["records"][2]
    keys = case["keys"]
    reader = RecordProtection(
        get_suite(case["cipher_suite"]),
        unhex(keys["client_write_mac_key"]),
        unhex(keys["client_write_key"]),
        unhex(keys["client_write_iv"]),
        seq=record["seq_num"],
    )
    assert reader.open(unhex(record["record"]))[1] == unhex(record["plaintext"])
