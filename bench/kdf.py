"""Section "kdf": kdf_lib's key derivation and record protection against direct anchors.

Key derivation (RFC 5246 §8.1 master secret + §6.3 key block) is timed against a
plain stdlib-``hmac`` PRF and tlslite-ng's; record seal+open (RFC 5246 §6.2.3,
RFC 7366, RFC 5288, RFC 7905) against the same cryptographic work done with
``cryptography`` primitives called directly. Every anchor is checked to give the
lab's bytes before it is timed.
"""

from __future__ import annotations

import hashlib
import hmac as stdlib_hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import kdf_lib
from kdf_lib.record import MAX_PLAINTEXT, ContentType, RecordProtection
from kdf_lib.suites import SUITES, BulkCipher, CipherSuite

from .report import Row, Target, format_rate, format_throughput
from .timing import Budget, compare

__all__ = ["RECORD_CASES", "TITLE", "DirectAead", "DirectCbc", "run", "stdlib_prf"]

TITLE = "kdf_lib microbenchmarks"

#: Targets from the issue: derivation at least as fast as the stdlib PRF and twice tlslite-ng;
#: record seal+open at most 1.5x the time of the direct primitives at 64 KiB.
DERIVATION_VS_STDLIB = Target(1.0)
DERIVATION_VS_TLSLITE = Target(2.0)
RECORD_OVERHEAD_64K = Target(round(1 / 1.5, 2), "time overhead ≤ 1.5x")

KEY_BLOCK_LENGTH = 128
PRE_MASTER_SECRET_LENGTH = 48
APPLICATION_DATA = int(ContentType.application_data)


class AnchorMismatch(RuntimeError):
    """An anchor gave different bytes from kdf_lib: its timing would compare different work."""


def _check_same(what: str, lab: bytes, anchor: bytes) -> None:
    if bytes(lab) != bytes(anchor):
        raise AnchorMismatch(f"{what}: the anchor's output differs from kdf_lib's")


# -- key derivation anchors ------------------------------------------------------------------


def stdlib_prf(secret: bytes, label: bytes, seed: bytes, length: int, digest: str) -> bytes:
    """The TLS 1.2 PRF (RFC 5246 §5) written straight from the RFC with the stdlib ``hmac``.

    P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...,
    with A(0) = seed and A(i) = HMAC(secret, A(i-1)); PRF = P_hash(secret, label + seed).
    """
    seed = label + seed
    output = b""
    a = seed
    while len(output) < length:
        a = stdlib_hmac.digest(secret, a, digest)
        output += stdlib_hmac.digest(secret, a + seed, digest)
    return output[:length]


def _lab_derivation(hash_name: str) -> Callable[[bytes, bytes, bytes], bytes]:
    def derive(pre_master_secret: bytes, client_random: bytes, server_random: bytes) -> bytes:
        master = kdf_lib.master_secret(pre_master_secret, client_random, server_random, hash_name)
        return kdf_lib.key_block(master, client_random, server_random, KEY_BLOCK_LENGTH, hash_name)

    return derive


def _stdlib_derivation(hash_name: str) -> Callable[[bytes, bytes, bytes], bytes]:
    def derive(pre_master_secret: bytes, client_random: bytes, server_random: bytes) -> bytes:
        master = stdlib_prf(
            pre_master_secret, b"master secret", client_random + server_random, 48, hash_name
        )
        return stdlib_prf(
            master, b"key expansion", server_random + client_random, KEY_BLOCK_LENGTH, hash_name
        )

    return derive


def _tlslite_derivation(hash_name: str) -> Callable[[bytes, bytes, bytes], bytes] | None:
    """tlslite-ng's calc_key for both steps, or None when tlslite-ng (a test extra) is absent."""
    try:
        from tlslite import mathtls  # type: ignore[import-untyped]
        from tlslite.constants import CipherSuite as TlsliteSuites  # type: ignore[import-untyped]
    except ImportError:
        return None
    # calc_key picks the PRF hash from the suite, so name one suite per hash.
    suite = {
        "sha256": TlsliteSuites.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "sha384": TlsliteSuites.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    }[hash_name]
    version = (3, 3)

    def derive(pre_master_secret: bytes, client_random: bytes, server_random: bytes) -> bytes:
        master = mathtls.calc_key(
            version,
            pre_master_secret,
            suite,
            b"master secret",
            client_random=client_random,
            server_random=server_random,
            output_length=48,
        )
        block: bytes = mathtls.calc_key(
            version,
            master,
            suite,
            b"key expansion",
            client_random=client_random,
            server_random=server_random,
            output_length=KEY_BLOCK_LENGTH,
        )
        return block

    # The PRF itself too, so a mismatch points at the PRF rather than at calc_key's plumbing.
    tlslite_prf = {"sha256": mathtls.PRF_1_2, "sha384": mathtls.PRF_1_2_SHA384}[hash_name]
    secret, seed = b"\x0b" * 48, b"\x5a" * 64
    _check_same(
        f"tlslite-ng PRF ({hash_name})",
        kdf_lib.prf(secret, b"test label", seed, 100, hash_name),
        tlslite_prf(secret, b"test label", seed, 100),
    )
    return derive


def _bound(
    derive: Callable[[bytes, bytes, bytes], bytes], inputs: tuple[bytes, bytes, bytes]
) -> Callable[[], bytes]:
    def call() -> bytes:
        return derive(*inputs)

    return call


def _derivation_rows(budget: Budget) -> list[Row]:
    pre_master_secret = secrets.token_bytes(PRE_MASTER_SECRET_LENGTH)
    client_random, server_random = secrets.token_bytes(32), secrets.token_bytes(32)
    inputs = (pre_master_secret, client_random, server_random)
    rows = []
    for hash_name in ("sha256", "sha384"):
        lab = _lab_derivation(hash_name)
        expected = lab(*inputs)
        name = f"master secret + {KEY_BLOCK_LENGTH}-byte key block, {hash_name.upper()} PRF"
        anchors: list[tuple[str, Callable[[bytes, bytes, bytes], bytes] | None, Target]] = [
            ("stdlib hmac.digest PRF", _stdlib_derivation(hash_name), DERIVATION_VS_STDLIB),
            ("tlslite-ng calc_key", _tlslite_derivation(hash_name), DERIVATION_VS_TLSLITE),
        ]
        for anchor_name, anchor, target in anchors:
            if anchor is None:
                rows.append(
                    Row(name, "—", f"{anchor_name} (not installed)", "—", None, None, target)
                )
                continue
            _check_same(f"{anchor_name} ({hash_name})", expected, anchor(*inputs))
            result = compare(_bound(lab, inputs), _bound(anchor, inputs), budget)
            rows.append(
                Row(
                    name,
                    format_rate(result.lab_rate, "derivations/s"),
                    anchor_name,
                    format_rate(result.anchor_rate, "derivations/s"),
                    result.ratio,
                    (result.ratio_q1, result.ratio_q3),
                    target,
                )
            )
    return rows


# -- HMAC call cost: the primitive under the PRF -----------------------------------------------


def _hmac_rows(budget: Budget) -> list[Row]:
    """One short HMAC-SHA256, as the PRF makes them: cryptography's keyed ``.copy()`` vs the stdlib.

    The message is 77 bytes, the size of the PRF's first A(1) input (13-byte label + two randoms).
    """
    key, message = secrets.token_bytes(48), secrets.token_bytes(77)
    keyed = crypto_hmac.HMAC(key, hashes.SHA256())
    stdlib_keyed = stdlib_hmac.new(key, digestmod=hashlib.sha256)

    def crypto_copy() -> bytes:
        h = keyed.copy()
        h.update(message)
        return h.finalize()

    def crypto_fresh() -> bytes:
        h = crypto_hmac.HMAC(key, hashes.SHA256())
        h.update(message)
        return h.finalize()

    def stdlib_digest() -> bytes:
        return stdlib_hmac.digest(key, message, "sha256")

    def stdlib_copy() -> bytes:
        h = stdlib_keyed.copy()
        h.update(message)
        return h.digest()

    expected = crypto_copy()
    rows = []
    for lab_name, lab, anchor_name, anchor in (
        ("cryptography HMAC .copy()", crypto_copy, "stdlib hmac.digest", stdlib_digest),
        ("cryptography HMAC .copy()", crypto_copy, "stdlib hmac.new().copy()", stdlib_copy),
        (
            "cryptography HMAC .copy()",
            crypto_copy,
            "cryptography HMAC(key) each call",
            crypto_fresh,
        ),
    ):
        _check_same(anchor_name, expected, anchor())
        result = compare(lab, anchor, budget)
        rows.append(
            Row(
                f"one HMAC-SHA256, 77-byte message: {lab_name}",
                format_rate(result.lab_rate, "HMAC/s"),
                anchor_name,
                format_rate(result.anchor_rate, "HMAC/s"),
                result.ratio,
                (result.ratio_q1, result.ratio_q3),
            )
        )
    return rows


# -- record protection anchors ---------------------------------------------------------------

_HEADER_PREFIX = bytes((APPLICATION_DATA,)) + b"\x03\x03"


def _additional_data(seq: int, length: int) -> bytes:
    """seq_num + type + version + length (RFC 5246 §6.2.3.1 MAC input, §6.2.3.3 AEAD AAD)."""
    return seq.to_bytes(8, "big") + _HEADER_PREFIX + length.to_bytes(2, "big")


def _records(data: bytes) -> list[bytes]:
    """The fragments of back-to-back records; the anchor trusts its own framing."""
    fragments, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        fragments.append(data[offset + 5 : offset + 5 + length])
        offset += 5 + length
    return fragments


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + MAX_PLAINTEXT] for i in range(0, len(data), MAX_PLAINTEXT)] or [b""]


def _frame(fragment: bytes) -> bytes:
    return _HEADER_PREFIX + len(fragment).to_bytes(2, "big") + fragment


class DirectAead:
    """AES-GCM (RFC 5288) or ChaCha20-Poly1305 (RFC 7905) records from the primitives alone."""

    def __init__(self, suite: CipherSuite, key: bytes, fixed_iv: bytes) -> None:
        self.gcm = suite.bulk_cipher is BulkCipher.AES_GCM
        self.aead = AESGCM(key) if self.gcm else ChaCha20Poly1305(key)
        self.salt = fixed_iv
        self.iv_mask = int.from_bytes(fixed_iv, "big")
        self.seal_seq = self.open_seq = 0

    def _nonce(self, seq: int) -> bytes:
        if self.gcm:
            return self.salt + seq.to_bytes(8, "big")
        return (self.iv_mask ^ seq).to_bytes(12, "big")

    def seal_many(self, data: bytes) -> bytes:
        out = []
        for piece in _pieces(data):
            seq, self.seal_seq = self.seal_seq, self.seal_seq + 1
            sealed = self.aead.encrypt(self._nonce(seq), piece, _additional_data(seq, len(piece)))
            out.append(_frame(seq.to_bytes(8, "big") + sealed if self.gcm else sealed))
        return b"".join(out)

    def open_many(self, data: bytes) -> list[bytes]:
        out = []
        for fragment in _records(data):
            seq, self.open_seq = self.open_seq, self.open_seq + 1
            sealed = fragment[8:] if self.gcm else fragment
            aad = _additional_data(seq, len(sealed) - 16)
            out.append(self.aead.decrypt(self._nonce(seq), sealed, aad))
        return out


class DirectCbc:
    """AES-CBC + HMAC records (RFC 5246 §6.2.3.2, or RFC 7366 encrypt-then-MAC) from the primitives.

    The padding check is a plain comparison, not the lab's constant-time scan: the anchor
    measures the cryptographic work, and the difference is the lab's overhead to explain.
    """

    def __init__(
        self,
        suite: CipherSuite,
        mac_key: bytes,
        enc_key: bytes,
        *,
        encrypt_then_mac: bool,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        assert suite.mac_name is not None
        self.keyed_mac = crypto_hmac.HMAC(mac_key, getattr(hashes, suite.mac_name.upper())())
        self.mac_length = suite.mac_length
        self.aes = algorithms.AES(enc_key)
        self.encrypt_then_mac = encrypt_then_mac
        self.random_bytes = random_bytes
        self.seal_seq = self.open_seq = 0

    def _mac(self, header: bytes, body: bytes) -> bytes:
        h = self.keyed_mac.copy()
        h.update(header)
        h.update(body)
        return h.finalize()

    def _encrypt(self, data: bytes) -> bytes:
        padding_length = 15 - len(data) % 16
        iv = self.random_bytes(16)
        encryptor = Cipher(self.aes, modes.CBC(iv)).encryptor()
        padded = data + bytes((padding_length,)) * (padding_length + 1)
        return iv + encryptor.update(padded) + encryptor.finalize()

    def _decrypt(self, body: bytes) -> bytes:
        decryptor = Cipher(self.aes, modes.CBC(body[:16])).decryptor()
        data = decryptor.update(body[16:]) + decryptor.finalize()
        padding_length = data[-1]
        if data[-padding_length - 1 :] != bytes((padding_length,)) * (padding_length + 1):
            raise ValueError("bad padding")
        return data[: -padding_length - 1]

    def seal_many(self, data: bytes) -> bytes:
        out = []
        for piece in _pieces(data):
            seq, self.seal_seq = self.seal_seq, self.seal_seq + 1
            if self.encrypt_then_mac:
                body = self._encrypt(piece)
                out.append(_frame(body + self._mac(_additional_data(seq, len(body)), body)))
            else:
                mac = self._mac(_additional_data(seq, len(piece)), piece)
                out.append(_frame(self._encrypt(piece + mac)))
        return b"".join(out)

    def open_many(self, data: bytes) -> list[bytes]:
        out = []
        for fragment in _records(data):
            seq, self.open_seq = self.open_seq, self.open_seq + 1
            if self.encrypt_then_mac:
                body, received = fragment[: -self.mac_length], fragment[-self.mac_length :]
                expected = self._mac(_additional_data(seq, len(body)), body)
                if not stdlib_hmac.compare_digest(expected, received):
                    raise ValueError("bad MAC")
                out.append(self._decrypt(body))
            else:
                data_and_mac = self._decrypt(fragment)
                plaintext = data_and_mac[: -self.mac_length]
                expected = self._mac(_additional_data(seq, len(plaintext)), plaintext)
                if not stdlib_hmac.compare_digest(expected, data_and_mac[-self.mac_length :]):
                    raise ValueError("bad MAC")
                out.append(plaintext)
        return out


@dataclass(frozen=True)
class RecordCase:
    label: str
    suite: CipherSuite
    encrypt_then_mac: bool = False


RECORD_CASES = (
    RecordCase("AES-128-CBC-SHA256 MtE", SUITES["TLS_RSA_WITH_AES_128_CBC_SHA256"]),
    RecordCase("AES-256-CBC-SHA256 EtM", SUITES["TLS_RSA_WITH_AES_256_CBC_SHA256"], True),
    RecordCase("AES-128-GCM", SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]),
    RecordCase("AES-256-GCM", SUITES["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]),
    RecordCase("ChaCha20-Poly1305", SUITES["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]),
)
RECORD_SIZES = ((1024, "1 KiB"), (64 * 1024, "64 KiB"))


def _counter_bytes() -> Callable[[int], bytes]:
    """A deterministic stand-in for random IVs, so lab and anchor can be compared byte for byte."""
    state = {"n": 0}

    def random_bytes(length: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(length, "big")

    return random_bytes


def _pair(
    case: RecordCase, keys: tuple[bytes, bytes, bytes], random_bytes: Callable[[int], bytes]
) -> tuple[RecordProtection, RecordProtection, DirectAead | DirectCbc]:
    mac_key, enc_key, fixed_iv = keys

    def layer() -> RecordProtection:
        return RecordProtection(
            case.suite,
            mac_key,
            enc_key,
            fixed_iv,
            encrypt_then_mac=case.encrypt_then_mac,
            random_bytes=random_bytes,
        )

    direct: DirectAead | DirectCbc
    if case.suite.is_aead:
        direct = DirectAead(case.suite, enc_key, fixed_iv)
    else:
        direct = DirectCbc(
            case.suite,
            mac_key,
            enc_key,
            encrypt_then_mac=case.encrypt_then_mac,
            random_bytes=random_bytes,
        )
    return layer(), layer(), direct


def _check_record_anchor(case: RecordCase, keys: tuple[bytes, bytes, bytes], data: bytes) -> None:
    """Same records byte for byte (with the same IVs), and each side opens the other's."""
    writer, reader, direct = _pair(case, keys, _counter_bytes())
    _, _, direct_twin = _pair(case, keys, _counter_bytes())
    for _ in range(2):  # twice, so sequence numbers past 0 are covered
        lab_records = writer.seal_many(APPLICATION_DATA, data)
        direct_records = direct_twin.seal_many(data)
        _check_same(f"{case.label} records", lab_records, direct_records)
        opened = [plaintext for _, plaintext in reader.open_many(direct_records)]
        _check_same(f"{case.label} lab opens direct", b"".join(opened), data)
        _check_same(f"{case.label} direct opens lab", b"".join(direct.open_many(lab_records)), data)


def _record_rows(budget: Budget) -> list[Row]:
    rows = []
    for case in RECORD_CASES:
        suite = case.suite
        keys = (
            secrets.token_bytes(suite.mac_key_length),
            secrets.token_bytes(suite.enc_key_length),
            secrets.token_bytes(suite.fixed_iv_length),
        )
        for size, size_label in RECORD_SIZES:
            data = secrets.token_bytes(size)
            _check_record_anchor(case, keys, data)
            writer, reader, direct = _pair(case, keys, secrets.token_bytes)

            def lab(
                w: RecordProtection = writer, r: RecordProtection = reader, data: bytes = data
            ) -> object:
                return r.open_many(w.seal_many(APPLICATION_DATA, data))

            def anchor(d: DirectAead | DirectCbc = direct, data: bytes = data) -> object:
                return d.open_many(d.seal_many(data))

            result = compare(lab, anchor, budget)
            records = -(-size // MAX_PLAINTEXT)
            rows.append(
                Row(
                    f"record seal+open {case.label}, {size_label}"
                    + (f" ({records} records)" if records > 1 else ""),
                    format_throughput(result.lab_rate * size),
                    "cryptography direct",
                    format_throughput(result.anchor_rate * size),
                    result.ratio,
                    (result.ratio_q1, result.ratio_q3),
                    RECORD_OVERHEAD_64K if size == 64 * 1024 else None,
                )
            )
    return rows


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """All of this section's rows: derivation, the HMAC primitive, then records."""
    progress("key derivation")
    rows = _derivation_rows(budget)
    progress("HMAC primitive")
    rows += _hmac_rows(budget)
    progress("record seal+open")
    rows += _record_rows(budget)
    return rows
