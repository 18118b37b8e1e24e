"""kdf_lib: the TLS 1.2 handshake lab's protocol library.

A sans-I/O library: no network, no files, no environment. Randomness and clocks
come in as parameters. The five derivation functions below are the stable public
API (RFC 5246 §5, §6.3, §7.4.9, §8.1; RFC 7627 §4); the modules hold the rest:
``suites`` (the suite table), ``record`` (record protection), ``kex`` (RSA and
ECDHE), ``messages`` (codecs), ``handshake`` (the state machines), ``connection``
(application data once established), ``trace`` (the step trace and fingerprints), ``pki``,
``keylog`` and ``errors``.
"""

from .errors import TLSError
from .prf import extended_master_secret, finished_verify_data, key_block, master_secret, prf

__all__ = [
    "TLSError",
    "extended_master_secret",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "prf",
]
__version__ = "0.1.0"
