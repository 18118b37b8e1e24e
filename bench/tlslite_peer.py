"""tlslite-ng as the handshake anchor: its settings, and a server: ``python -m bench.tlslite_peer``.

The server listens on 127.0.0.1 on a port the kernel picks (printed as the first line of
stdout), completes one TLS 1.2 handshake per TCP connection, each in a thread of its own, with
the lab's certificate and key and a session cache (resumption by session ID, as in the lab),
then closes the socket. It stops by itself after ``--max-seconds``, and on SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: The lab's two default suites, as tlslite-ng names them, with their IANA code points.
SUITE_IDS = {"rsa": 0x003D, "ecdhe": 0xC02F}


def settings(key_exchange: str) -> Any:
    """TLS 1.2 only, one suite: TLS_RSA_WITH_AES_256_CBC_SHA256 or
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (x25519); EMS and encrypt-then-MAC on, as in the lab."""
    from tlslite.api import HandshakeSettings  # type: ignore[import-untyped]

    chosen = HandshakeSettings()
    chosen.minVersion = chosen.maxVersion = (3, 3)
    chosen.useExtendedMasterSecret = True
    chosen.useEncryptThenMAC = True
    if key_exchange == "rsa":
        chosen.cipherNames = ["aes256"]
        chosen.macNames = ["sha256"]
        chosen.keyExchangeNames = ["rsa"]
    else:
        chosen.cipherNames = ["aes128gcm"]
        chosen.keyExchangeNames = ["ecdhe_rsa"]
        chosen.eccCurves = ["x25519"]
        chosen.keyShares = ["x25519"]
    return chosen


def _serve(args: argparse.Namespace) -> int:
    from tlslite.api import (
        SessionCache,
        TLSConnection,
        X509CertChain,
        parsePEMKey,
    )

    chain = X509CertChain()
    chain.parsePemList(Path(args.chain).read_text(encoding="ascii"))
    key = parsePEMKey(Path(args.key).read_text(encoding="ascii"), private=True)
    chosen = settings(args.key_exchange)
    cache = SessionCache()
    deadline = time.monotonic() + args.max_seconds

    def handle(connection: socket.socket) -> None:
        tls = TLSConnection(connection)
        try:
            tls.handshakeServer(
                certChain=chain, privateKey=key, settings=chosen, sessionCache=cache
            )
            # No close_notify exchange, as with s_time: a close that fails half-way would mark
            # the cached session not resumable, and the lab's handshakes end at Finished too.
        except Exception as exc:  # a client that went away; the client side counts failures
            print(f"handshake failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            connection.close()

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.5)
        print(listener.getsockname()[1], flush=True)
        print(f"key: {type(key).__name__}", file=sys.stderr, flush=True)
        while time.monotonic() < deadline:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(30)
            threading.Thread(target=handle, args=(connection,), daemon=True).start()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tlslite_peer")
    parser.add_argument("--chain", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--key-exchange", choices=sorted(SUITE_IDS), required=True)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    return _serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
