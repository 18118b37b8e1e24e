"""lab_cli: the ``tls-lab`` command, a terminal view of the lab and an offline decryptor.

``tls-lab handshake`` draws the ladder, the derivation chain and a side-by-side check of
both services; ``tls-lab decrypt`` opens saved records with an NSS key log, as Wireshark
does. The handshake's transcript is rebuilt from the exchanged JSON by
``lab_analysis.recorded``.
"""

from kdf_lib import __version__  # the project's one version

__all__ = ["__version__"]
