"""Provision the lab server's certificate: a demo CA, a server key and chain, the client's trust.

Usage (the compose ``certs`` step)::

    python -m server_svc.certs --server-dir /certs/server --trust-dir /certs/trust \\
        --server-name server [--extra-name localhost] [--owner UID[:GID]]

Idempotent: if ``server.key``, ``chain.pem``, ``ecdsa-server.key`` and ``ecdsa-chain.pem``
(server dir) and ``ca.pem`` (trust dir) exist, match each other, verify for every requested
name and stay valid for at least :data:`RENEW_BEFORE`, they are reused ("reusing"); otherwise
a new CA and both server certificates are created and all five files are replaced.
``--force`` always regenerates.

With ``--state-key PATH`` it also makes the key-encryption key that seals the services' state
in Redis (the scaled stack), once: 32 random bytes, mode 0600, kept on later runs.

Files written:

* ``server.key`` — PKCS#8, mode 0600, owned by whoever runs this step. The server image runs
  it as its non-root user (uid 10001), which owns /certs/server and /certs/trust so that fresh
  named volumes inherit that owner: no ``--owner`` needed. If the step runs as root instead,
  pass ``--owner 10001`` so the service can still read its key (chown needs CAP_CHOWN).
* ``chain.pem`` — the leaf only: the CA is a root, and TLS servers do not send the root
  (RFC 5246 §7.4.2: the self-signed root "MAY be omitted").
* ``ecdsa-server.key`` and ``ecdsa-chain.pem`` — the same for the ECDSA (P-256) certificate
  that ECDHE_ECDSA suites need. The one RSA CA signs both leaves, as a public CA signs RSA and
  ECDSA certificates for one site: the client keeps one trust anchor, and a CA's key type need
  not match its leaves' (RFC 5246 §7.4.2, with the RSA schemes in signature_algorithms).
* ``ca.pem`` in the trust dir — the client's only trust anchor.
* ``client-ca.pem`` in the server dir — the same CA, the one server_svc trusts for client
  certificates (CLIENT_CA_FILE, mutual TLS).
* with ``--client-dir``: ``client.key`` (mode 0600) and ``client.pem`` there, client_svc's own
  certificate (CN ``client_svc``, extendedKeyUsage clientAuth) from the same CA, for mutual TLS
  (CLIENT_CERT_FILE, CLIENT_KEY_FILE). Only client_svc mounts that directory: the server sees
  no client key, the client no server key.

The CA private key is discarded unless ``--keep-ca-key PATH`` is given: whoever holds it can
mint certificates the client trusts, so a demo CA key left in a volume is a standing liability,
and a fresh CA on regeneration costs nothing. Each action is logged as one JSON line on stdout;
no key material is ever logged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from kdf_lib import pki
from kdf_lib.client_auth import issue_client_certificate, verify_client_chain
from kdf_lib.errors import TLSError
from lab_common.sealing import write_key_file

SERVER_KEY_FILE = "server.key"
CHAIN_FILE = "chain.pem"
ECDSA_KEY_FILE = "ecdsa-server.key"
ECDSA_CHAIN_FILE = "ecdsa-chain.pem"
CA_FILE = "ca.pem"
CLIENT_CA_FILE = "client-ca.pem"
CLIENT_KEY_FILE = "client.key"
CLIENT_CERT_FILE = "client.pem"
#: The common name of client_svc's certificate (its URI SAN is spiffe://tls-lab/client_svc).
CLIENT_NAME = "client_svc"
DEFAULT_CA_NAME = "TLS Lab Demo CA"
RENEW_BEFORE = timedelta(days=30)

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class Owner:
    """Numeric owner for written files; -1 leaves a field unchanged (as in os.chown)."""

    uid: int
    gid: int = -1


def ensure_certificates(
    server_dir: Path,
    trust_dir: Path,
    server_name: str,
    *,
    now: datetime,
    extra_names: Sequence[str] = (),
    ca_name: str = DEFAULT_CA_NAME,
    force: bool = False,
    owner: Owner | None = None,
    keep_ca_key: Path | None = None,
    client_dir: Path | None = None,
) -> dict[str, object]:
    """Reuse or (re)create the server's keys and chains (RSA and ECDSA) and the client's trust
    anchor.

    Returns the log record describing what was done (public data only).
    """
    names = list(dict.fromkeys([server_name, *extra_names]))
    key_path = server_dir / SERVER_KEY_FILE
    chain_path = server_dir / CHAIN_FILE
    ecdsa_key_path = server_dir / ECDSA_KEY_FILE
    ecdsa_chain_path = server_dir / ECDSA_CHAIN_FILE
    ca_path = trust_dir / CA_FILE

    reason = "forced"
    if not force:
        try:
            leaf, ca_certificate = _load_reusable(
                key_path, chain_path, ca_path, names, ca_name, now
            )
            ecdsa_leaf = _load_reusable_ecdsa(
                ecdsa_key_path, ecdsa_chain_path, ca_certificate, names, now
            )
            _check_client_ca(server_dir / CLIENT_CA_FILE, ca_certificate)
            client_leaf = (
                _load_reusable_client(client_dir, ca_certificate, now) if client_dir else None
            )
        except _NotReusable as problem:
            reason = str(problem)
        else:
            # Re-apply permissions: a reused key must stay private and readable by the service.
            _apply_mode_and_owner(key_path, _PRIVATE_MODE, owner)
            _apply_mode_and_owner(ecdsa_key_path, _PRIVATE_MODE, owner)
            record = _log_record("reusing", None, names, leaf, ecdsa_leaf, ca_certificate, None)
            if client_leaf is not None:
                assert client_dir is not None
                _apply_mode_and_owner(client_dir / CLIENT_KEY_FILE, _PRIVATE_MODE, owner)
                record["client_leaf_fingerprint_sha256"] = pki.fingerprint_sha256(client_leaf)
            if keep_ca_key is not None:
                record["note"] = "the CA key only exists when a CA is created; use --force"
            return record

    ca = pki.create_ca(ca_name, now=now)
    server = pki.issue_server_certificate(ca, server_name, now=now, extra_names=names[1:])
    ecdsa = pki.issue_ecdsa_server_certificate(ca, server_name, now=now, extra_names=names[1:])
    server_dir.mkdir(parents=True, exist_ok=True)
    trust_dir.mkdir(parents=True, exist_ok=True)
    # Key and chain first, the trust anchor last: a run interrupted in between leaves files
    # that fail the reuse check, so the next run regenerates all of them.
    _write_atomically(key_path, server.private_key_pem(), _PRIVATE_MODE, owner)
    chain_pem = "".join(pki.certificate_chain_pem([server.certificate])).encode("ascii")
    _write_atomically(chain_path, chain_pem, _PUBLIC_MODE, owner)
    _write_atomically(ecdsa_key_path, ecdsa.private_key_pem(), _PRIVATE_MODE, owner)
    ecdsa_chain_pem = "".join(pki.certificate_chain_pem([ecdsa.certificate])).encode("ascii")
    _write_atomically(ecdsa_chain_path, ecdsa_chain_pem, _PUBLIC_MODE, owner)
    _write_atomically(server_dir / CLIENT_CA_FILE, ca.certificate_pem(), _PUBLIC_MODE, owner)
    client = None
    if client_dir is not None:
        client = issue_client_certificate(ca, CLIENT_NAME, now=now)
        client_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(
            client_dir / CLIENT_KEY_FILE, client.private_key_pem(), _PRIVATE_MODE, owner
        )
        _write_atomically(
            client_dir / CLIENT_CERT_FILE, client.certificate_pem(), _PUBLIC_MODE, owner
        )
    _write_atomically(ca_path, ca.certificate_pem(), _PUBLIC_MODE, owner)
    if keep_ca_key is not None:
        keep_ca_key.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(keep_ca_key, ca.private_key_pem(), _PRIVATE_MODE, None)
    created = _log_record(
        "created",
        reason,
        names,
        server.certificate,
        ecdsa.certificate,
        ca.certificate,
        keep_ca_key,
    )
    if client is not None:
        created["client_leaf_fingerprint_sha256"] = pki.fingerprint_sha256(client.certificate)
    return created


class _NotReusable(Exception):
    """The existing files cannot be reused; the message says why (no secrets)."""


def _load_reusable(
    key_path: Path,
    chain_path: Path,
    ca_path: Path,
    names: Sequence[str],
    ca_name: str,
    now: datetime,
) -> tuple[x509.Certificate, x509.Certificate]:
    """The existing leaf and CA certificate, if the files on disk can be served as they are."""
    missing = [path.name for path in (key_path, chain_path, ca_path) if not path.is_file()]
    if missing:
        raise _NotReusable(f"missing {', '.join(missing)}")
    try:
        private_key = pki.load_private_key(key_path.read_bytes())
        chain = pki.load_certificate_chain(chain_path.read_bytes())
        trust_anchors = pki.load_certificate_chain(ca_path.read_bytes())
    except (OSError, ValueError, TLSError) as error:
        raise _NotReusable(f"unreadable: {error}") from None
    leaf, ca_certificate = chain[0], trust_anchors[0]
    if leaf.public_key() != private_key.public_key():
        raise _NotReusable("server.key does not match the certificate in chain.pem")
    common_names = ca_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [attribute.value for attribute in common_names] != [ca_name]:
        raise _NotReusable("CA name changed")
    for name in names:
        try:
            pki.verify_server_chain(chain, trust_anchors, name, now=now, key_exchange="rsa")
        except TLSError as error:
            raise _NotReusable(f"{error.code}: {error.message}") from None
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        raise _NotReusable(f"expires at {leaf.not_valid_after_utc.isoformat()}, renewing")
    return leaf, ca_certificate


def _load_reusable_ecdsa(
    key_path: Path,
    chain_path: Path,
    ca_certificate: x509.Certificate,
    names: Sequence[str],
    now: datetime,
) -> x509.Certificate:
    """The ECDSA leaf on disk, if it and its key can be served with the CA's certificate."""
    missing = [path.name for path in (key_path, chain_path) if not path.is_file()]
    if missing:
        raise _NotReusable(f"missing {', '.join(missing)}")
    try:
        private_key = pki.load_ec_private_key(key_path.read_bytes())
        chain = pki.load_certificate_chain(chain_path.read_bytes())
    except (OSError, ValueError, TLSError) as error:
        raise _NotReusable(f"unreadable: {error}") from None
    leaf = chain[0]
    if leaf.public_key() != private_key.public_key():
        raise _NotReusable(f"{key_path.name} does not match the certificate in {chain_path.name}")
    for name in names:
        try:
            pki.verify_server_chain(
                chain,
                [ca_certificate],
                name,
                now=now,
                key_exchange="ecdhe",
                authentication="ecdsa",
            )
        except TLSError as error:
            raise _NotReusable(f"{chain_path.name}: {error.code}: {error.message}") from None
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        raise _NotReusable(f"{chain_path.name} expires at {leaf.not_valid_after_utc.isoformat()}")
    return leaf


def _check_client_ca(path: Path, ca_certificate: x509.Certificate) -> None:
    """The server's client CA file must hold the CA in use (an older volume has none)."""
    try:
        found = pki.load_certificate_chain(path.read_bytes())
    except (OSError, ValueError, TLSError):
        raise _NotReusable(f"missing or unreadable {path.name}") from None
    if found != [ca_certificate]:
        raise _NotReusable(f"{path.name} is not the CA in use")


def _load_reusable_client(
    client_dir: Path, ca_certificate: x509.Certificate, now: datetime
) -> x509.Certificate:
    """client_svc's certificate on disk, if it and its key still serve with the CA in use: the
    CA key is gone after a run, so a missing client certificate means a new CA."""
    key_path, cert_path = client_dir / CLIENT_KEY_FILE, client_dir / CLIENT_CERT_FILE
    missing = [path.name for path in (key_path, cert_path) if not path.is_file()]
    if missing:
        raise _NotReusable(f"missing {', '.join(missing)}")
    try:
        private_key = pki.load_private_key(key_path.read_bytes())
        chain = pki.load_certificate_chain(cert_path.read_bytes())
        leaf = verify_client_chain(chain, [ca_certificate], now=now)
    except (OSError, ValueError) as error:
        raise _NotReusable(f"unreadable: {error}") from None
    except TLSError as error:
        raise _NotReusable(f"{cert_path.name}: {error.code}: {error.message}") from None
    if leaf.public_key() != private_key.public_key():
        raise _NotReusable(f"{key_path.name} does not match {cert_path.name}")
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        raise _NotReusable(f"{cert_path.name} expires at {leaf.not_valid_after_utc.isoformat()}")
    return leaf


def _write_atomically(path: Path, data: bytes, mode: int, owner: Owner | None) -> None:
    """Write via a temporary file in the same directory and rename over ``path``.

    mkstemp creates the file with mode 0600, so a private key is never readable by others,
    not even between creation and chmod.
    """
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _apply_mode_and_owner(temporary, mode, owner)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _apply_mode_and_owner(path: Path, mode: int, owner: Owner | None) -> None:
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


def _log_record(
    action: str,
    reason: str | None,
    names: Sequence[str],
    leaf: x509.Certificate,
    ecdsa_leaf: x509.Certificate,
    ca_certificate: x509.Certificate,
    keep_ca_key: Path | None,
) -> dict[str, object]:
    leaf_description = pki.describe_certificate(leaf)
    ca_description = pki.describe_certificate(ca_certificate)
    record: dict[str, object] = {
        "event": "certs",
        "action": action,
        "names": list(names),
        "leaf_fingerprint_sha256": leaf_description["fingerprint_sha256"],
        "leaf_not_after": leaf_description["not_after"],
        "ecdsa_leaf_fingerprint_sha256": pki.fingerprint_sha256(ecdsa_leaf),
        "ca_subject": ca_description["subject"],
        "ca_fingerprint_sha256": ca_description["fingerprint_sha256"],
        "ca_key_kept_at": None if keep_ca_key is None else str(keep_ca_key),
    }
    if reason is not None:
        record["reason"] = reason
    return record


def _parse_owner(text: str) -> Owner:
    uid_text, _, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else -1
    except ValueError:
        raise argparse.ArgumentTypeError("expected UID or UID:GID (numbers)") from None
    if uid < 0 or (gid_text and gid < 0):
        raise argparse.ArgumentTypeError("uid and gid must not be negative")
    return Owner(uid=uid, gid=gid)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server_svc.certs",
        description="Create (or reuse) the lab's demo CA, server key and certificate chain.",
    )
    parser.add_argument(
        "--server-dir",
        type=Path,
        required=True,
        help="gets server.key, chain.pem, ecdsa-server.key, ecdsa-chain.pem",
    )
    parser.add_argument("--trust-dir", type=Path, required=True, help="gets ca.pem")
    parser.add_argument(
        "--client-dir",
        type=Path,
        help="gets client.key and client.pem, client_svc's certificate for mutual TLS",
    )
    parser.add_argument("--server-name", required=True, help="DNS name or IP of the server")
    parser.add_argument(
        "--extra-name", action="append", default=[], help="additional SAN (repeatable)"
    )
    parser.add_argument("--ca-name", default=DEFAULT_CA_NAME, help="common name of the demo CA")
    parser.add_argument("--force", action="store_true", help="regenerate even if reusable")
    parser.add_argument(
        "--owner",
        type=_parse_owner,
        help="UID[:GID] to own the written files (e.g. 10001, the service user)",
    )
    parser.add_argument(
        "--state-key",
        type=Path,
        metavar="PATH",
        help="also make the key-encryption key for state in Redis here (mode 0600), once: "
        "a key already there is kept, so state sealed under it stays readable",
    )
    parser.add_argument(
        "--keep-ca-key",
        type=Path,
        metavar="PATH",
        help="also write the CA private key here (mode 0600); by default it is discarded",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, now: datetime | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        record = ensure_certificates(
            arguments.server_dir,
            arguments.trust_dir,
            arguments.server_name,
            now=datetime.now(UTC) if now is None else now,
            extra_names=arguments.extra_name,
            ca_name=arguments.ca_name,
            force=arguments.force,
            owner=arguments.owner,
            keep_ca_key=arguments.keep_ca_key,
            client_dir=arguments.client_dir,
        )
    except (OSError, ValueError) as error:
        failure = {
            "event": "certs",
            "action": "failed",
            "error": f"{type(error).__name__}: {error}",
        }
        print(json.dumps(failure), file=sys.stderr)
        return 1
    if arguments.state_key is not None:
        try:
            made = write_key_file(
                arguments.state_key,
                owner=(arguments.owner.uid, arguments.owner.gid) if arguments.owner else (-1, -1),
            )
        except OSError as error:
            failed = {"event": "state_key", "action": "failed", "error": type(error).__name__}
            print(json.dumps(failed), file=sys.stderr)
            return 1
        state_key = {"event": "state_key", "action": "created" if made else "reusing"}
        print(json.dumps({**state_key, "path": str(arguments.state_key)}))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
