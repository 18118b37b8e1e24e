"""The derivation chain: pre-master secret → master secret → key block → the six keys.

RFC 5246 §8.1 (master secret), RFC 7627 §4 (extended master secret), §6.3 (key block and
its split), with the PRF calls spelled out and a note where the seed texts simplify
(docs/key-block.md). Values are client_svc's; secrets only when the service reveals them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdf_lib.prf import MASTER_SECRET_LENGTH
from kdf_lib.suites import SUITES
from kdf_lib.trace import StepKind

from .gather import Gathered
from .style import Style, wrap

__all__ = ["SECRET_MARK", "KeyRange", "key_ranges", "render_derivation"]

SECRET_MARK = "[secret shown: REVEAL_SECRETS=1]"  # noqa: S105 (a label, not a password)

_PMS_STEPS = (StepKind.SEND_ENCRYPTED_PRE_MASTER_SECRET, StepKind.SEND_ECDH_PUBLIC_KEY)
_KEY_NOTES = {
    "aes_cbc": [
        "the IVs are derived but unused: each TLS 1.2 CBC record carries its own IV "
        "(RFC 5246 §6.2.3.2)",
    ],
    "aes_gcm": [
        "AEAD: no MAC keys, the cipher authenticates with the write key",
        "the IVs are 4-byte salts, the implicit half of each GCM nonce (RFC 5288 §3)",
    ],
    "chacha20_poly1305": [
        "AEAD: no MAC keys, the cipher authenticates with the write key",
        "the IVs are 12-byte nonce masks, XORed with the sequence number (RFC 7905 §2)",
    ],
}


@dataclass(frozen=True)
class KeyRange:
    """One key's place in the key block: bytes [start, end), and its fingerprint: ``sha256``
    from 16 bytes up, ``hmac`` (keyed from the master secret) below (docs/protocol.md §3.8)."""

    name: str
    start: int
    end: int
    sha256: str | None = None
    hmac: str | None = None

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def fingerprint(self) -> tuple[str, str] | None:
        """(``"sha256"`` or ``"hmac"``, hex), or None when the service gave none."""
        if self.sha256:
            return "sha256", self.sha256
        return ("hmac", self.hmac) if self.hmac else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def key_ranges(layout: Any) -> list[KeyRange]:
    """key_block_layout entries as [start, end) ranges, in the order the service gave them."""
    ranges = []
    for part in layout or []:
        if isinstance(part, dict):
            start, length = int(part.get("start", 0)), int(part.get("length", 0))
            ranges.append(
                KeyRange(
                    str(part.get("name", "?")),
                    start,
                    start + length,
                    _text(part.get("sha256")),
                    _text(part.get("hmac")),
                )
            )
    return ranges


def _client_step(g: Gathered, *kinds: StepKind) -> dict[str, Any]:
    """The client's first trace step of one of ``kinds``, or ``{}``."""
    wanted = {kind.value for kind in kinds}
    for step in g.handshake.get("trace") or []:
        if isinstance(step, dict) and step.get("actor") == "client" and step.get("kind") in wanted:
            return step
    return {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Chain:
    """Collects the chain's lines: values, PRF calls between them, notes, secrets."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.width = style.width
        self.lines: list[str] = []

    def value(self, label: str, size: Any, sha256: Any, note: str = "") -> None:
        style = self.style
        size_text = f"{size} bytes" if isinstance(size, int) else ""
        fingerprint = f"sha256 {style.short(str(sha256))}" if sha256 else ""
        self.lines.append(style.paint(f"{label:<19}", "bold") + f"{size_text:<11}{fingerprint}")
        if note:
            self.lines.extend(style.paint(line, "dim") for line in wrap(note, self.width, "  "))

    def secret(self, value: Any, indent: str = "  ") -> None:
        """A revealed secret in hex, marked; on the mark's line if it fits, else in chunks."""
        if not isinstance(value, str) or not value:
            return
        style = self.style
        mark = style.paint(SECRET_MARK, "red", "bold")
        if len(indent) + len(SECRET_MARK) + 1 + len(value) <= self.width:
            self.lines.append(f"{indent}{mark} {style.paint(value, 'red')}")
            return
        self.lines.append(indent + mark)
        chunk = max(8, (self.width - len(indent) - 2) // 8 * 8)
        for start in range(0, len(value), chunk):
            self.lines.append(f"{indent}  {style.paint(value[start : start + chunk], 'red')}")

    def prf(self, formula: str, reference: str, inputs: list[str], note: str) -> None:
        """One PRF call between two values: the call, its inputs, a note on the seed texts."""
        style, bar = self.style, self.style.glyphs.vline
        first, rest = f"    {bar}  ", f"    {bar}    "
        self.lines.append(style.paint(f"    {bar}", "dim"))
        if len(first) + len(formula) + 3 + len(reference) <= self.width:
            self.lines.append(
                style.paint(first + formula, "blue") + "   " + style.paint(reference, "dim")
            )
        else:
            self.lines.append(style.paint(first + formula, "blue"))
            self.lines.append(style.paint(first + reference, "dim"))
        for text in inputs:
            self.lines.extend(
                style.paint(line, "blue") for line in wrap(text, self.width, first, rest)
            )
        self.lines.extend(
            style.paint(line, "yellow")
            for line in wrap(f"note: {note}", self.width, first, first + "      ")
        )
        self.lines.append(style.paint(f"    {style.glyphs.down}", "dim"))


def render_derivation(g: Gathered, style: Style) -> list[str]:
    """pre-master secret → master secret → key block → six keys, as client_svc derived them."""
    hs = g.handshake
    suite_name = str(hs.get("cipher_suite", "?"))
    suite = SUITES.get(suite_name)
    hash_name = suite.prf_hash.upper().replace("SHA", "SHA-") if suite else "?"
    secrets = _dict(hs.get("secrets")) if g.secrets_revealed else {}
    fingerprints = _dict(hs.get("fingerprints"))
    client_random = style.short(str(hs.get("client_random", "")))
    server_random = style.short(str(hs.get("server_random", "")))
    chain = _Chain(style)
    chain.lines.append(style.paint("Derivation chain", "bold"))
    chain.lines.extend(
        style.paint(line, "dim")
        for line in wrap(
            f"client_svc's values for {suite_name} (PRF hash {hash_name}); server_svc derived "
            "its own from the same public inputs, see the check below.",
            style.width,
        )
    )
    chain.lines.append("")

    # pre-master secret -> master secret (RFC 5246 §8.1, RFC 7627 §4)
    if hs.get("resumed"):
        chain.value(
            "master secret",
            MASTER_SECRET_LENGTH,
            fingerprints.get("master_secret"),
            f"reused from session {style.short(str(hs.get('session_id', '')))}: an abbreviated "
            "handshake has no key exchange and no pre-master secret (RFC 5246 §7.3)",
        )
        chain.secret(secrets.get("master_secret"))
    else:
        pms = _client_step(g, *_PMS_STEPS)
        data = _dict(pms.get("data"))
        if pms.get("kind") == StepKind.SEND_ENCRYPTED_PRE_MASTER_SECRET.value:
            how = "RSA: 03 03 + 46 random bytes from the client, sent encrypted to the certificate's key"
        else:
            how = (
                f"ECDHE {data.get('named_curve', '')}: the client's private key with the server's "
                "public key; each side computes it, it never travels"
            )
        chain.value(
            "pre-master secret",
            data.get("pre_master_secret_length"),
            data.get("pre_master_secret_sha256"),
            how,
        )
        if g.secrets_revealed:
            chain.secret(_dict(pms.get("secrets")).get("pre_master_secret"))
        if hs.get("extended_master_secret"):
            session_hash = _dict(_client_step(g, StepKind.EXTENDED_MASTER_SECRET).get("data")).get(
                "session_hash", ""
            )
            chain.prf(
                'PRF(pre_master_secret, "extended master secret", session_hash)',
                "RFC 7627 §4",
                [
                    f"session_hash = {hash_name}(ClientHello … ClientKeyExchange) = "
                    f"{style.short(str(session_hash))}"
                ],
                "the seed texts hash the PMS with ClientRandom + ServerRandom; the extended "
                "master secret (negotiated here) uses the handshake's hash instead, which binds "
                "the secret to this very handshake",
            )
        else:
            chain.prf(
                'PRF(pre_master_secret, "master secret", client_random + server_random)',
                "RFC 5246 §8.1",
                [f"seed = client_random {client_random} + server_random {server_random}"],
                "here the seed texts are right: client_random first",
            )
        chain.value("master secret", MASTER_SECRET_LENGTH, fingerprints.get("master_secret"))
        chain.secret(secrets.get("master_secret"))

    # master secret -> key block (RFC 5246 §6.3)
    layout = key_ranges(hs.get("key_block_layout"))
    total = max((part.end for part in layout), default=0)
    chain.prf(
        'PRF(master_secret, "key expansion", server_random + client_random)',
        "RFC 5246 §6.3",
        [f"seed = server_random {server_random} + client_random {client_random}"],
        'the seed texts write PRF(master_secret, "key expansion", ClientRandom + ServerRandom) '
        "and list the write keys before the MAC keys; RFC 5246 §6.3 puts server_random first "
        "and the MAC keys first (docs/key-block.md)",
    )
    chain.value("key block", total, fingerprints.get("key_block"))
    chain.secret(secrets.get("key_block"))

    # key block -> the six keys
    glyphs, digits = style.glyphs, len(str(total))
    for i, part in enumerate(layout):
        branch = glyphs.last if i == len(layout) - 1 else glyphs.branch
        head = f"    {branch} [{part.start:>{digits}}, {part.end:>{digits}})  "
        kind, value = part.fingerprint or ("", "")
        fingerprint = f"  {kind} {style.short(value)}" if value else ""
        chain.lines.append(
            head + style.paint(f"{part.name:<21}", "bold") + f"{part.length:>3} bytes{fingerprint}"
        )
        chain.secret(secrets.get(part.name), " " * len(head))
    for note in _KEY_NOTES.get(suite.bulk_cipher.value, []) if suite else []:
        chain.lines.extend(style.paint(line, "dim") for line in wrap(note, style.width, "  "))
    return chain.lines
