"""lab_cli: the ``tls-lab`` command, a terminal view of the lab and an offline decryptor.

``tls-lab handshake`` draws the ladder, the derivation chain and a side-by-side check of
both services; ``tls-lab decrypt`` opens saved records with an NSS key log, as Wireshark
does. ``lab_cli.transcript`` rebuilds a handshake's transcript from the exchanged JSON.
"""

__version__ = "0.1.0"
