"""The TLS 1.2 pseudorandom function and the secrets derived with it.

Implements P_hash and PRF (RFC 5246 §5), the master secret (§8.1), the extended
master secret (RFC 7627 §4), the key block (§6.3) and Finished verify_data (§7.4.9).
HMAC comes from ``cryptography``; the PRF construction is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, hmac

from .role import Role

__all__ = [
    "HASHES",
    "MASTER_SECRET_LENGTH",
    "RANDOM_LENGTH",
    "VERIFY_DATA_LENGTH",
    "PrfRounds",
    "extended_master_secret",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "p_hash",
    "prf",
    "prf_rounds",
]

#: The PRF hashes TLS 1.2 suites use, with their digest sizes.
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
}
RANDOM_LENGTH = 32
MASTER_SECRET_LENGTH = 48
VERIFY_DATA_LENGTH = 12
#: Upper bound on one PRF output; far above any TLS 1.2 use (a key block is at most 192 bytes).
MAX_PRF_OUTPUT = 1 << 16

_FINISHED_LABELS = {Role.CLIENT: b"client finished", Role.SERVER: b"server finished"}


def _as_bytes(name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


# HashAlgorithm instances carry no state, so one per hash serves every call.
_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {name: cls() for name, cls in HASHES.items()}


def _hash_algorithm(hash_name: object) -> hashes.HashAlgorithm:
    if not isinstance(hash_name, str):
        raise TypeError(f"hash_name must be str, not {type(hash_name).__name__}")
    try:
        return _ALGORITHMS[hash_name]
    except KeyError:
        raise ValueError(f"hash_name must be one of {sorted(HASHES)}, not {hash_name!r}") from None


def _exact_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, not {len(value)}")


@dataclass(frozen=True)
class PrfRounds:
    """PRF(secret, label, seed) round by round (RFC 5246 §5), for showing the construction.

    P_hash's seed is ``label + seed``; round i computes A(i) = HMAC(secret, A(i-1)) and the
    block HMAC(secret, A(i) + label + seed). ``output`` is the blocks joined and cut to the
    asked length: exactly what :func:`prf` returns.
    """

    hash_name: str
    p_hash_seed: bytes
    #: A(1)..A(n).
    a_values: tuple[bytes, ...] = field(repr=False)
    #: The whole HMAC(secret, A(i) + label + seed) outputs (the last one is not cut).
    blocks: tuple[bytes, ...] = field(repr=False)
    output: bytes = field(repr=False)


def prf_rounds(
    secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str = "sha256"
) -> PrfRounds:
    """:func:`prf` with every round of P_hash kept, for the lab's PRF calculator.

    Same arguments and errors as :func:`prf`; the same loop computes both.
    """
    secret = _as_bytes("secret", secret)
    label = _as_bytes("label", label)
    seed = _as_bytes("seed", seed)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    rounds: list[tuple[bytes, bytes]] = []
    output = _p_hash(secret, label + seed, length, algorithm, rounds)
    return PrfRounds(
        hash_name=hash_name,
        p_hash_seed=label + seed,
        a_values=tuple(a for a, _ in rounds),
        blocks=tuple(block for _, block in rounds),
        output=output,
    )


def p_hash(secret: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """P_hash(secret, seed) truncated to ``length`` bytes (RFC 5246 §5)."""
    secret = _as_bytes("secret", secret)
    seed = _as_bytes("seed", seed)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    return _p_hash(secret, seed, length, algorithm)


def _p_hash(
    secret: bytes,
    seed: bytes,
    length: int,
    algorithm: hashes.HashAlgorithm,
    rounds: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """P_hash on checked arguments: the one loop behind every PRF output of the library.

    The HMAC keyed with ``secret`` is set up once and copied for each of the
    2 * ceil(length / digest_size) HMACs; that copy is the cheapest HMAC call
    ``cryptography`` offers, so it sets the floor of a derivation's cost. Handshakes pass no
    ``rounds``; the PRF calculator (:func:`prf_rounds`) gets each (A(i), block) appended to it.
    """
    keyed = hmac.HMAC(secret, algorithm)
    output = b""
    a = seed
    while len(output) < length:
        h = keyed.copy()
        h.update(a)
        a = h.finalize()
        h = keyed.copy()
        h.update(a + seed)
        block = h.finalize()
        if rounds is not None:
            rounds.append((a, block))
        output += block
    return output[:length]


def _check_length(length: object) -> None:
    # bool is an int subclass; a length of True is a caller bug, not 1.
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError(f"length must be int, not {type(length).__name__}")
    if not 0 <= length <= MAX_PRF_OUTPUT:
        raise ValueError(f"length must be between 0 and {MAX_PRF_OUTPUT}, not {length}")


def prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """PRF(secret, label, seed) = P_<hash>(secret, label + seed), RFC 5246 §5.

    Args:
        secret: the PRF secret (any length, may be empty).
        label: the ASCII label, as bytes (e.g. ``b"master secret"``).
        seed: the seed (may be empty).
        length: how many output bytes to produce.
        hash_name: ``"sha256"`` (the TLS 1.2 default) or ``"sha384"`` (the SHA-384 suites).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: unknown hash or a length out of range.
    """
    secret = _as_bytes("secret", secret)
    label = _as_bytes("label", label)
    seed = _as_bytes("seed", seed)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    return _p_hash(secret, label + seed, length, algorithm)


def master_secret(
    pre_master_secret: bytes,
    client_random: bytes,
    server_random: bytes,
    hash_name: str = "sha256",
) -> bytes:
    """master_secret = PRF(pre_master_secret, "master secret", client_random + server_random)[0..47].

    RFC 5246 §8.1. The randoms are each 32 bytes; note the order (client first),
    which is the reverse of the key block's seed.
    """
    pre_master_secret = _as_bytes("pre_master_secret", pre_master_secret)
    client_random = _as_bytes("client_random", client_random)
    server_random = _as_bytes("server_random", server_random)
    if not pre_master_secret:
        raise ValueError("pre_master_secret must not be empty")
    _exact_length("client_random", client_random, RANDOM_LENGTH)
    _exact_length("server_random", server_random, RANDOM_LENGTH)
    return _p_hash(
        pre_master_secret,
        b"master secret" + client_random + server_random,
        MASTER_SECRET_LENGTH,
        _hash_algorithm(hash_name),
    )


def extended_master_secret(
    pre_master_secret: bytes, session_hash: bytes, hash_name: str = "sha256"
) -> bytes:
    """The RFC 7627 §4 master secret: PRF(pms, "extended master secret", session_hash)[0..47].

    ``session_hash`` is the hash of the handshake messages up to and including
    ClientKeyExchange, so it must be as long as the PRF hash's digest.
    """
    pre_master_secret = _as_bytes("pre_master_secret", pre_master_secret)
    session_hash = _as_bytes("session_hash", session_hash)
    algorithm = _hash_algorithm(hash_name)
    if not pre_master_secret:
        raise ValueError("pre_master_secret must not be empty")
    _exact_length("session_hash", session_hash, algorithm.digest_size)
    return prf(
        pre_master_secret,
        b"extended master secret",
        session_hash,
        MASTER_SECRET_LENGTH,
        hash_name,
    )


def key_block(
    master_secret: bytes,
    client_random: bytes,
    server_random: bytes,
    length: int,
    hash_name: str = "sha256",
) -> bytes:
    """key_block = PRF(master_secret, "key expansion", server_random + client_random), RFC 5246 §6.3.

    The seed puts the *server* random first. Explanatory texts often write
    ClientRandom + ServerRandom here; that would give different keys from every
    real TLS stack.
    """
    master_secret = _as_bytes("master_secret", master_secret)
    client_random = _as_bytes("client_random", client_random)
    server_random = _as_bytes("server_random", server_random)
    _exact_length("master_secret", master_secret, MASTER_SECRET_LENGTH)
    _exact_length("client_random", client_random, RANDOM_LENGTH)
    _exact_length("server_random", server_random, RANDOM_LENGTH)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    return _p_hash(
        master_secret, b"key expansion" + server_random + client_random, length, algorithm
    )


def finished_verify_data(
    master_secret: bytes, sender: Role, handshake_hash: bytes, hash_name: str = "sha256"
) -> bytes:
    """verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11].

    RFC 5246 §7.4.9; ``sender`` (a :class:`Role` or its value) selects the label
    ``"client finished"`` or ``"server finished"``.
    """
    master_secret = _as_bytes("master_secret", master_secret)
    handshake_hash = _as_bytes("handshake_hash", handshake_hash)
    if not isinstance(sender, str):
        raise TypeError(f"sender must be str, not {type(sender).__name__}")
    label = _FINISHED_LABELS[Role(sender)]  # ValueError for anything but a role
    algorithm = _hash_algorithm(hash_name)
    _exact_length("master_secret", master_secret, MASTER_SECRET_LENGTH)
    _exact_length("handshake_hash", handshake_hash, algorithm.digest_size)
    return prf(master_secret, label, handshake_hash, VERIFY_DATA_LENGTH, hash_name)
