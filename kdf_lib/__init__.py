"""kdf_lib: the TLS 1.2 handshake lab's protocol library (sans-I/O)."""

from .prf import extended_master_secret, finished_verify_data, key_block, master_secret, prf

__all__ = ["extended_master_secret", "finished_verify_data", "key_block", "master_secret", "prf"]
