"""Key material at rest: what a service writes to a shared store is sealed with a key-encryption
key (KEK) that the store never sees.

AES-256-GCM with a fresh random 96-bit nonce per write, and the store key as associated data, so
a sealed value moved under another key (one connection's state under another's id) does not
open. Random nonces keep the number of writes under one KEK far below NIST SP 800-38D's 2^32
(docs/scaling.md says when to rotate). The KEK is 32 random bytes in a file that the compose
``certs`` step writes into a volume only the services mount.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_LENGTH", "SealedStateError", "StateSealer", "write_key_file"]

KEY_LENGTH = 32
_NONCE_LENGTH = 12
#: The sealed form's first byte: a later form can be told apart.
_FORMAT = b"\x01"


class SealedStateError(Exception):
    """A sealed value did not open: another KEK, another store key, or damaged bytes."""


class StateSealer:
    """Seals and opens values for a store under one KEK; never shows the key in a repr."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LENGTH:
            raise ValueError(f"a key-encryption key is {KEY_LENGTH} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "<StateSealer>"

    @classmethod
    def from_file(cls, path: str | Path) -> StateSealer:
        """The KEK in ``path`` (32 bytes, as :func:`write_key_file` writes it). Raises
        ValueError naming the file if it is missing or of the wrong size."""
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the state key file {path}: {exc.strerror}") from None
        if len(key) != KEY_LENGTH:
            raise ValueError(f"the state key file {path} must hold {KEY_LENGTH} bytes")
        return cls(key)

    def seal(self, value: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_LENGTH)
        return _FORMAT + nonce + self._aead.encrypt(nonce, value, _FORMAT + context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if sealed[:1] != _FORMAT or len(sealed) < 1 + _NONCE_LENGTH + 16:
            raise SealedStateError("not a sealed value")
        nonce, body = sealed[1 : 1 + _NONCE_LENGTH], sealed[1 + _NONCE_LENGTH :]
        try:
            return self._aead.decrypt(nonce, body, _FORMAT + context)
        except InvalidTag:
            raise SealedStateError("the sealed value does not open under this key") from None


def write_key_file(path: str | Path, *, owner: tuple[int, int] = (-1, -1)) -> bool:
    """Create a fresh KEK in ``path`` (mode 0600) unless one is there; True if it was created.
    Keeping an existing key keeps the state sealed under it readable."""
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_bytes(KEY_LENGTH))
    if owner != (-1, -1):
        os.chown(target, *owner)
    return True
