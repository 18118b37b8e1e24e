"""The key-encryption key: what a store keeps opens only under the same key and store key."""

from __future__ import annotations

import os
import stat

import pytest

from lab_common.sealing import KEY_LENGTH, SealedStateError, StateSealer, write_key_file


def test_a_sealed_value_opens_only_under_its_key_and_its_context():
    sealer = StateSealer(bytes(KEY_LENGTH))
    sealed = sealer.seal(b"master secret bytes", b"conn:1")
    assert b"master secret" not in sealed
    assert sealer.open(sealed, b"conn:1") == b"master secret bytes"
    with pytest.raises(SealedStateError):
        sealer.open(sealed, b"conn:2")  # moved under another connection's key
    with pytest.raises(SealedStateError):
        StateSealer(b"\x01" * KEY_LENGTH).open(sealed, b"conn:1")
    damaged = bytearray(sealed)
    damaged[-1] ^= 1
    with pytest.raises(SealedStateError):
        sealer.open(bytes(damaged), b"conn:1")
    with pytest.raises(SealedStateError):
        sealer.open(b"", b"conn:1")


def test_two_seals_of_one_value_differ():
    sealer = StateSealer(bytes(KEY_LENGTH))
    assert sealer.seal(b"same", b"k") != sealer.seal(b"same", b"k")


def test_the_key_file_is_made_once_private_and_then_kept(tmp_path):
    path = tmp_path / "state" / "state.key"
    assert write_key_file(path) is True
    key = path.read_bytes()
    assert len(key) == KEY_LENGTH
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert write_key_file(path) is False
    assert path.read_bytes() == key
    sealer = StateSealer.from_file(path)
    assert "StateSealer" in repr(sealer) and key.hex() not in repr(sealer)


def test_a_missing_or_short_key_file_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        StateSealer.from_file(tmp_path / "nowhere")
    short = tmp_path / "short"
    short.write_bytes(b"x" * 5)
    with pytest.raises(ValueError, match="short"):
        StateSealer.from_file(short)
