"""The TLS 1.2 pseudorandom function and the secrets derived with it.

Implements P_hash and PRF (RFC 5246 §5), the master secret (§8.1), the extended
master secret (RFC 7627 §4), the key block (§6.3) and Finished verify_data (§7.4.9).
HMAC comes from ``cryptography``; the PRF construction is ours.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

__all__ = [
    "HASHES",
    "MASTER_SECRET_LENGTH",
    "RANDOM_LENGTH",
    "VERIFY_DATA_LENGTH",
    "extended_master_secret",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "p_hash",
    "p_hash_rounds",
    "prf",
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

_FINISHED_LABELS = {"client": b"client finished", "server": b"server finished"}


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


def p_hash_rounds(
    secret: bytes, seed: bytes, length: int, hash_name: str = "sha256"
) -> tuple[list[bytes], bytes]:
    """P_hash(secret, seed) with its intermediate values, RFC 5246 §5.

    Returns ``(a_values, output)`` where ``a_values`` are A(1)..A(n) and ``output``
    is the first ``length`` bytes of HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
    The lab's PRF calculator shows the rounds; handshakes take :func:`_p_hash`,
    the same loop without keeping A(i), which is measurably faster (bench kdf).
    """
    secret = _as_bytes("secret", secret)
    seed = _as_bytes("seed", seed)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    keyed = hmac.HMAC(secret, algorithm)
    a_values: list[bytes] = []
    out = bytearray()
    a = seed
    while len(out) < length:
        h = keyed.copy()
        h.update(a)
        a = h.finalize()
        a_values.append(a)
        h = keyed.copy()
        h.update(a + seed)
        out += h.finalize()
    return a_values, bytes(out[:length])


def p_hash(secret: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """P_hash(secret, seed) truncated to ``length`` bytes (RFC 5246 §5)."""
    secret = _as_bytes("secret", secret)
    seed = _as_bytes("seed", seed)
    algorithm = _hash_algorithm(hash_name)
    _check_length(length)
    return _p_hash(secret, seed, length, algorithm)


def _p_hash(secret: bytes, seed: bytes, length: int, algorithm: hashes.HashAlgorithm) -> bytes:
    """P_hash on checked arguments, without keeping A(i): the path every handshake takes.

    The HMAC keyed with ``secret`` is set up once and copied for each of the
    2 * ceil(length / digest_size) HMACs; that copy is the cheapest HMAC call
    ``cryptography`` offers, so it sets the floor of a derivation's cost.
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
        output += h.finalize()
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
    master_secret: bytes, sender: str, handshake_hash: bytes, hash_name: str = "sha256"
) -> bytes:
    """verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11].

    RFC 5246 §7.4.9; ``sender`` is ``"client"`` or ``"server"`` and selects the
    label ``"client finished"`` or ``"server finished"``.
    """
    master_secret = _as_bytes("master_secret", master_secret)
    handshake_hash = _as_bytes("handshake_hash", handshake_hash)
    if not isinstance(sender, str):
        raise TypeError(f"sender must be str, not {type(sender).__name__}")
    try:
        label = _FINISHED_LABELS[sender]
    except KeyError:
        raise ValueError(f"sender must be 'client' or 'server', not {sender!r}") from None
    algorithm = _hash_algorithm(hash_name)
    _exact_length("master_secret", master_secret, MASTER_SECRET_LENGTH)
    _exact_length("handshake_hash", handshake_hash, algorithm.digest_size)
    return prf(master_secret, label, handshake_hash, VERIFY_DATA_LENGTH, hash_name)
