"""client_svc's own certificate for mutual TLS (CLIENT_CERT_FILE, CLIENT_KEY_FILE): read once
per process, handed to each handshake's ClientConfig (RFC 5246 §7.4.6)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509

from kdf_lib import pki
from kdf_lib.client_auth import ClientPrivateKey

from .config import ClientSettings


@lru_cache(maxsize=4)
def _load(cert_path: str, key_path: str) -> tuple[tuple[x509.Certificate, ...], ClientPrivateKey]:
    try:
        chain = tuple(pki.load_certificate_chain(Path(cert_path).read_bytes()))
        pem = Path(key_path).read_bytes()
    except OSError as exc:
        raise ValueError(
            f"CLIENT_CERT_FILE / CLIENT_KEY_FILE: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    key: ClientPrivateKey
    try:
        key = pki.load_private_key(pem)  # RSA
    except ValueError:
        key = pki.load_ec_private_key(pem)  # ECDSA, on P-256 or P-384
    if chain[0].public_key() != key.public_key():
        raise ValueError("CLIENT_KEY_FILE does not hold the key of CLIENT_CERT_FILE's certificate")
    return chain, key


def check_client_certificate(settings: ClientSettings) -> None:
    """Read the configured certificate and key once, as the service starts: a missing or
    mismatched file stops it there, naming the setting, rather than failing handshakes."""
    client_certificate(settings, wanted=True)


def client_certificate(settings: ClientSettings, wanted: bool) -> dict[str, Any]:
    """The ClientConfig fields for client_svc's certificate: none unless one is configured
    and the handshake request wants it sent."""
    if not wanted or not settings.client_cert_file:
        return {}
    chain, key = _load(settings.client_cert_file, settings.client_key_file)
    return {"client_certificate_chain": chain, "client_private_key": key}
